"""
A burst of clients connecting at the same moment: does any wait for a SYN
retransmission because the listen queue overflowed?

    python -m benchmarks.burst [--clients 500] [--bursts 4] [-- CLUSTER OPTIONS]

Starts C{twist cluster --workers 2} on 127.0.0.1 serving
L{benchmarks.hello} (plus any options after C{--}, e.g. C{--backlog 50}),
then opens C{--clients} connections at once, each sending one request with
C{Connection: close}, C{--bursts} times.  For each burst it prints the
median and the slowest time to an answer, and how many clients took more
than a second: the kernel drops the SYNs of clients that find the listen
queue full, and they retry one second later.  Every burst is bounded by a
30 s time-out; the cluster is stopped by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from benchmarks import bench

REQUEST = b"GET / HTTP/1.1\r\nHost: burst\r\nConnection: close\r\n\r\n"


async def _client(port: int, times: list[float]) -> None:
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    await reader.read()
    times.append(time.perf_counter() - start)
    writer.close()


async def _burst(port: int, clients: int) -> list[float]:
    times: list[float] = []
    await asyncio.wait_for(
        asyncio.gather(*[_client(port, times) for _ in range(clients)]), 30
    )
    return sorted(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.burst",
        description="Clients connecting all at once: time to answer.")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--bursts", type=int, default=4)
    parser.add_argument("cluster", nargs="*",
                        help="options for twist cluster, after --")
    options = parser.parse_args(argv)
    server = bench.Server(
        "twist cluster",
        [sys.executable, "-m", "twisted", "--log-format=json", "cluster",
         "--workers", "2", "--app", "benchmarks.hello.resource",
         "--listen", "tcp:0:interface=127.0.0.1", *options.cluster],
        lambda: bench._jsonListening(2),
    )
    server.start()
    try:
        assert server.port is not None
        for number in range(options.bursts):
            times = asyncio.run(_burst(server.port, options.clients))
            late = sum(t > 1.0 for t in times)
            print(f"burst {number + 1}: {len(times)} clients, "
                  f"p50 {1000 * times[len(times) // 2]:.0f} ms, "
                  f"slowest {1000 * times[-1]:.0f} ms, over 1 s: {late}", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
