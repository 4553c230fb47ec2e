"""
What adopting one connection costs a worker, in one process, without load
from other processes (so the figures hold still on a shared machine).

    python -m benchmarks.adopt [--connections N] [--rounds R]

Each round opens N real TCP connections on 127.0.0.1 and times, per
connection, L{twisted_cluster._worker.adoption.adoptConnection} (what a worker
does) against Twisted's C{adoptStreamConnection} followed by closing the
received descriptor (what a worker did before), both with the same plain
protocol; the transports are then dropped without touching the network.
Medians over the rounds are printed, in microseconds per connection.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time
from typing import Callable

from twisted.internet.protocol import Factory, Protocol

from twisted_cluster._worker.adoption import adoptConnection


def _connections(count: int) -> tuple[list[socket.socket], list[int]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(count)
    clients, fds = [], []
    for _ in range(count):
        clients.append(socket.create_connection(listener.getsockname(), timeout=5))
        fds.append(listener.accept()[0].detach())
    listener.close()
    return clients, fds


def _time(count: int, adopt: Callable[[int], object]) -> float:
    """
    Microseconds per connection for C{adopt}, which takes over each fd.
    """
    clients, fds = _connections(count)
    transports = []
    start = time.perf_counter()
    for fd in fds:
        transports.append(adopt(fd))
    elapsed = time.perf_counter() - start
    for transport in transports:
        transport.stopReading()  # type: ignore[attr-defined]
        transport.socket.close()  # type: ignore[attr-defined]
    for client in clients:
        client.close()
    return 1e6 * elapsed / count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.adopt",
        description="Per-connection cost of a worker's adoption path.")
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=15)
    options = parser.parse_args(argv)
    from twisted.internet import reactor

    factory = Factory.forProtocol(Protocol)
    sessions = iter(range(1, 1 << 30))

    def ours(fd: int) -> object:
        return adoptConnection(reactor, fd, socket.AF_INET, factory, next(sessions))

    def twisteds(fd: int) -> object:
        try:
            return reactor.adoptStreamConnection(  # type: ignore[attr-defined]
                fd, socket.AF_INET, factory)
        finally:
            os.close(fd)

    figures: dict[str, list[float]] = {"adoptConnection": [], "adoptStreamConnection": []}
    for _ in range(options.rounds):
        figures["adoptConnection"].append(_time(options.connections, ours))
        figures["adoptStreamConnection"].append(_time(options.connections, twisteds))
    for name, values in figures.items():
        print(f"{name:<24} {statistics.median(values):6.1f} us per connection "
              f"(median of {options.rounds} rounds of {options.connections})")


if __name__ == "__main__":
    main()
