"""
A worker's resident memory beside one twisted.web process serving the same
app, after the same requests.

    python -m benchmarks.workerrss [--app benchmarks.hello.resource] [--requests 200]

Both serve on 127.0.0.1; each gets C{--requests} GETs on new connections,
then its RSS (C{VmRSS}) is read from C{/proc}.  A worker imports only what
it runs (no master-side module, no prometheus_client: see
C{tests.test_workerimports}), so it should weigh about what one process
does.  Every process started is stopped by pid.
"""

from __future__ import annotations

import argparse
import http.client
import sys

from benchmarks import bench


def rss(pid: int) -> int:
    """
    C{pid}'s resident memory, in KiB.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def hit(port: int, count: int) -> None:
    for _ in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/")
        connection.getresponse().read()
        connection.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workerrss",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    options.workers = 1
    options.policies = ["round-robin"]
    options.node = False
    single, cluster = bench.servers(options)[:2]
    figures = {}
    for server in (single, cluster):
        server.start()
        try:
            assert server.port is not None
            hit(server.port, options.requests)
            master, workers = server.pids()
            figures[server.name] = (rss(master), [rss(pid) for pid in workers])
        finally:
            server.stop()
    singleRSS, _ = figures[single.name]
    masterRSS, (workerRSS,) = figures[cluster.name]
    print(f"one twisted.web process: {singleRSS / 1024:6.1f} MiB")
    print(f"cluster worker:          {workerRSS / 1024:6.1f} MiB "
          f"({(workerRSS - singleRSS) / 1024:+.1f} MiB)")
    print(f"cluster master:          {masterRSS / 1024:6.1f} MiB")


if __name__ == "__main__":
    main()
