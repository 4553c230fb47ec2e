"""
How long a graceful stop (SIGTERM) takes for an app that is not
twisted.web, with idle clients connected.

    python -m benchmarks.stoptime [--app tests.apps.lifecycle.plain] [--grace 6]

Starts C{twist cluster} with two workers and C{--grace-period GRACE} on a
free port of 127.0.0.1, connects two clients (one that never sends a byte,
one that sends a line and then goes idle), sends the master SIGTERM and
prints when each client got EOF and when the master exited.  Before the
drain contract (docs/api.md, "The life cycle") a plain protocol app used
the whole grace period; now idle connections are closed after 2 s, and an
app that drains itself (C{examples.pubsub.app}) ends as soon as it is done.
Every wait is bounded; the master and its workers are stopped by pid.
"""

from __future__ import annotations

import argparse
import signal
import socket
import time

from benchmarks.chaos import Cluster


def _untilEOF(sock: socket.socket, start: float, timeout: float) -> tuple[float, bytes]:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return time.monotonic() - start, data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--app", default="tests.apps.lifecycle.plain")
    parser.add_argument("--grace", type=float, default=6.0)
    parser.add_argument("--line", default="JOIN lobby", help="what the second client sends")
    options = parser.parse_args(argv)
    cluster = Cluster(2, options.app, ["--grace-period", str(options.grace)])
    try:
        cluster.waitReady(2)
        assert cluster.port is not None
        silent = socket.create_connection(("127.0.0.1", cluster.port), timeout=5)
        idle = socket.create_connection(("127.0.0.1", cluster.port), timeout=5)
        idle.sendall(options.line.encode() + b"\n")
        time.sleep(1.0)
        start = time.monotonic()
        cluster.process.send_signal(signal.SIGTERM)
        results = [_untilEOF(s, start, options.grace + 5) for s in (silent, idle)]
        cluster.process.wait(options.grace + 15)
        exited = time.monotonic() - start
    finally:
        cluster.stop()
    print(f"app {options.app}, grace period {options.grace:g} s, SIGTERM at 0:")
    for name, (at, data) in zip(("silent client", "idle client"), results):
        print(f"  {name:<14} EOF at {at:5.2f} s  (received {data[:60]!r})")
    print(f"  master exited at {exited:5.2f} s")


if __name__ == "__main__":
    main()
