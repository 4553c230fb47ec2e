"""
Do large application messages slow down the hand-off of connections?

    /tmp/venv/bin/python -m benchmarks.control_traffic [--seconds 4] [--megabytes 16]

Runs a 2-worker cluster (in this process, on 127.0.0.1) and measures the
latency of sequential HTTP requests, each on a new connection, made from a
thread: first while the control channels are idle, then while the master
broadcasts a C{--megabytes} value (L{twisted_cluster.BigBytes}) to every
worker, back to back.  Accepted connections travel on the hand-off channel,
not on the control channel, so they do not queue behind the messages; what
remains is the workers' time to parse them.  Bounded in time; every process
is stopped.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from typing import Any

from twisted.protocols import amp
from twisted.web.resource import Resource

from twisted_cluster import BigBytes, ClusterApp, ClusterConfig, ClusterService


class Sink(amp.Command):
    """Master -> worker: a large value; answer its size."""

    arguments = [(b"data", BigBytes())]
    response = [(b"size", amp.Integer())]


class SinkResponders(amp.CommandLocator):
    def __init__(self, context: Any) -> None:
        pass

    @Sink.responder
    def sink(self, data: bytes) -> dict[str, int]:
        return {"size": len(data)}


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello\n"


app = ClusterApp(app=Hello(), workerResponders=SinkResponders)


def _get(port: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        while s.recv(65536):
            pass
    return time.perf_counter() - started


def _load(port: int, seconds: float, out: list[float]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out.append(_get(port))


def _summary(name: str, latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{name:<28} {len(ms):>6} requests  p50 {statistics.median(ms):6.2f} ms  "
        f"p99 {p99:6.2f} ms  max {ms[-1]:7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--megabytes", type=int, default=16)
    args = parser.parse_args()

    from twisted.internet import reactor

    config = ClusterConfig(
        workers=2,
        app="benchmarks.control_traffic.app",
        listen=("tcp:0:interface=127.0.0.1",),
        gracePeriod=5,
    )
    service = ClusterService(reactor, config)
    payload = b"x" * (args.megabytes * 1024 * 1024)
    results: dict[str, list[float]] = {"idle": [], "during broadcasts": []}
    sent = [0]

    async def run() -> None:
        await service.whenReady()
        while len(service.workerIds()) < 2:
            from twisted.internet.task import deferLater

            await deferLater(reactor, 0.05, lambda: None)
        port = service.listeners[0].portNumber
        from twisted.internet.threads import deferToThread

        await deferToThread(_load, port, args.seconds, results["idle"])
        loading = deferToThread(_load, port, args.seconds, results["during broadcasts"])
        while not loading.called:
            await service.broadcast(Sink, timeout=30, data=payload)
            sent[0] += 1
        await loading

    def done(result: Any) -> Any:
        d = service.stopService()
        d.addBoth(lambda _: reactor.stop())
        return result

    def start() -> None:
        service.startService()
        from twisted.internet.defer import Deferred

        Deferred.fromCoroutine(run()).addBoth(done).addErrback(print)

    reactor.callWhenRunning(start)
    reactor.run()
    for name, latencies in results.items():
        print(_summary(name, latencies))
    mb = sent[0] * 2 * args.megabytes
    print(f"broadcasts: {sent[0]} x {args.megabytes} MiB to 2 workers "
          f"({mb / args.seconds:.0f} MiB/s over the control channels)")


if __name__ == "__main__":
    main()
