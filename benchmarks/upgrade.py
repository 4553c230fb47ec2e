"""
Master upgrades (SIGUSR2) under load: bounded load on 127.0.0.1 while the
master is replaced again and again.

    python -m benchmarks.upgrade [--workers 2] [--clients 8] [--upgrades 3]
                                 [--every 4]

Starts C{twist cluster} (C{benchmarks.hello}) on a free port of 127.0.0.1,
runs C{--clients} threads of sequential GETs, each on a new connection,
and sends the current master SIGUSR2 every C{--every} seconds,
C{--upgrades} times.  Prints the requests sent, failed and lost, how long
each upgrade took (SIGUSR2 to the new master ready with its workers, and
to the old master gone), and whether the last master is a new process.
Then stops the last master with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from typing import Any, Callable

from benchmarks.chaos import Cluster, Load, _get


class _UpgradedCluster(Cluster):
    """
    The cluster, whose log events are kept in order: the masters that
    follow each other write to the same output.
    """

    def __init__(self, workers: int, app: str) -> None:
        self.log: list[dict[str, Any]] = []
        super().__init__(workers, app, [])

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line.lstrip(b"\x1e"))
            except ValueError:
                continue
            self.log.append(event)
            fmt = event.get("log_format", "")
            if fmt == "listening on {address}" and self.port is None:
                self.port = int(event["address"].rsplit(":", 1)[1])
            elif "worker_id" in event and fmt.endswith("ready"):
                self.ready[event["worker_id"]] = event.get("worker_pid") or event["pid"]

    def waitEvent(self, timeout: float, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """
        The first event C{wanted} accepts, within C{timeout}.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.log):
                if wanted(event):
                    return event
            time.sleep(0.02)
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.upgrade")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--upgrades", type=int, default=3)
    parser.add_argument("--every", type=float, default=4.0)
    options = parser.parse_args(argv)

    cluster = _UpgradedCluster(options.workers, "benchmarks.hello.resource")
    first = master = cluster.process.pid
    timings: list[tuple[float, float]] = []
    failedUpgrades = 0
    try:
        cluster.waitReady(options.workers)
        assert cluster.port is not None
        port = cluster.port
        load = Load(options.clients, lambda stop: _get(port, "/", 10))
        started = time.monotonic()
        try:
            for _ in range(options.upgrades):
                time.sleep(options.every)
                sent = time.monotonic()
                os.kill(master, signal.SIGUSR2)
                # The old master's events: the new master started (it
                # names the sockets handed over), then the hand-over (no
                # sockets, no failure); then the new master's "old one gone".
                ready = cluster.waitEvent(
                    60, lambda e: e.get("master_pid") == master and "new_master_pid" in e
                    and "listeners" not in e and "reason" not in e,
                )
                readyAt = time.monotonic()
                gone = cluster.waitEvent(60, lambda e: e.get("old_master_pid") == master)
                if not ready or gone is None:
                    failedUpgrades += 1
                    continue
                timings.append((readyAt - sent, time.monotonic() - sent))
                master = gone["master_pid"]
            time.sleep(1)
        finally:
            load.stop()
        elapsed = time.monotonic() - started
    finally:
        os.kill(master, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while _alive(master) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(master):
            os.kill(master, signal.SIGKILL)
        cluster.process.wait(10)

    print(f"upgrade: workers {options.workers}, clients {options.clients}, "
          f"{elapsed:.1f} s, SIGUSR2 every {options.every:g} s")
    print(f"requests sent:     {load.sent} ({load.sent / elapsed:.0f}/s)")
    print(f"requests failed:   {load.failed} {dict(load.errors)}")
    print(f"requests lost:     {load.lost} (neither answered nor closed)")
    print(f"upgrades:          {len(timings)} completed, {failedUpgrades} not")
    for readyAfter, goneAfter in timings:
        print(f"  USR2 -> old master hands over {readyAfter:.2f} s, "
              f"-> old master gone {goneAfter:.2f} s")
    print(f"masters:           first pid {first}, last pid {master} "
          f"({'new' if master != first else 'the same'})")


if __name__ == "__main__":
    main()
