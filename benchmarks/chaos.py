"""
Chaos run: bounded load on 127.0.0.1 while workers are SIGKILLed every few
seconds and the cluster is rolled with SIGHUP.

    python -m benchmarks.chaos [--workers 4] [--clients 8] [--duration 20]
                               [--kill-every 2] [--hup-every 7]

It starts C{twist cluster --app benchmarks.hello.resource} on a free port of
127.0.0.1, runs C{--clients} threads that each send sequential GETs on new
connections for C{--duration} seconds, SIGKILLs a random worker every
C{--kill-every} seconds (one that said ready) and sends the master SIGHUP every C{--hup-every}
seconds; then stops the master with SIGTERM and prints the requests sent,
the failures, and the failures per kill.  Only requests already inside a
killed worker may fail: a connection still in the master, or handed over
but not yet adopted, is served by another worker.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Cluster:
    """
    The master under test, its port, and its log events.
    """

    def __init__(self, workers: int, log: str | None = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "twisted", "--log-format=json", "cluster",
             "--workers", str(workers), "--app", "benchmarks.hello.resource",
             "--listen", "tcp:0:interface=127.0.0.1", "--control", "none"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.port: int | None = None
        self.ready: dict[int, int] = {}
        self.events: Counter[str] = Counter()
        self._log = open(log, "wb") if log else None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def count(self, start: str) -> int:
        """
        How many events the master logged whose format begins with C{start}.
        """
        return sum(n for fmt, n in self.events.items() if fmt.startswith(start))

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if self._log is not None:
                self._log.write(line)
            try:
                event = json.loads(line.lstrip(b"\x1e"))
            except ValueError:
                continue
            fmt = event.get("log_format", "")
            self.events[fmt] += 1
            if fmt == "listening on {address}" and self.port is None:
                self.port = int(event["address"].rsplit(":", 1)[1])
            elif fmt == "worker {worker_id} pid {pid} ready":
                self.ready[event["worker_id"]] = event["pid"]

    def workerPids(self) -> list[int]:
        """
        The master's live child processes (its workers).
        """
        pid = self.process.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def waitReady(self, workers: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.port is None or len(self.ready) < workers:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("chaos: the cluster did not start")
            time.sleep(0.05)

    def stop(self) -> int | None:
        """
        SIGTERM the master; SIGKILL it (and its workers) if it hangs.
        """
        children = self.workerPids()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            for pid in [self.process.pid, *children]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return self.process.wait(10)


class Load:
    """
    C{clients} threads of sequential GETs on new connections until stopped.
    """

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.sent = 0
        self.failed = 0
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _client(self) -> None:
        while not self._stop.is_set():
            error = None
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                connection.close()
                if response.status != 200:
                    error = f"status {response.status}"
            except (OSError, http.client.HTTPException) as e:
                error = type(e).__name__
            with self._lock:
                self.sent += 1
                if error:
                    self.failed += 1
                    self.errors[error] += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--kill-every", type=float, default=2.0)
    parser.add_argument("--hup-every", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", help="write the master's JSON log here")
    options = parser.parse_args(argv)
    rng = random.Random(options.seed)

    cluster = Cluster(options.workers, options.log)
    kills = hups = 0
    try:
        cluster.waitReady(options.workers)
        assert cluster.port is not None
        load = Load(cluster.port, options.clients)
        started = time.monotonic()
        nextKill = started + options.kill_every
        nextHup = started + options.hup_every
        try:
            while time.monotonic() - started < options.duration:
                now = time.monotonic()
                if now >= nextKill:
                    # Serving workers only: killing a replacement that is
                    # still starting aborts the roll-out (as it should).
                    pids = sorted(set(cluster.workerPids()) & set(cluster.ready.values()))
                    if pids:
                        os.kill(rng.choice(pids), signal.SIGKILL)
                        kills += 1
                    nextKill += options.kill_every
                if now >= nextHup:
                    cluster.process.send_signal(signal.SIGHUP)
                    hups += 1
                    nextHup += options.hup_every
                time.sleep(0.02)
        finally:
            load.stop()
        elapsed = time.monotonic() - started
    finally:
        status = cluster.stop()

    print(f"workers {options.workers}, clients {options.clients}, "
          f"{elapsed:.1f} s, SIGKILL every {options.kill_every:g} s, "
          f"SIGHUP every {options.hup_every:g} s")
    print(f"requests sent:     {load.sent} ({load.sent / elapsed:.0f}/s)")
    print(f"requests failed:   {load.failed} "
          f"({100.0 * load.failed / max(load.sent, 1):.3f}%) {dict(load.errors)}")
    print(f"workers killed:    {kills}")
    print(f"failures per kill: {load.failed / max(kills, 1):.2f}")
    # A SIGHUP during a roll-out extends it: fewer roll-outs than signals.
    done = cluster.count("rolling restart done")
    aborted = cluster.count("rolling restart aborted")
    print(f"SIGHUP:            {hups} sent, {done} roll-outs completed, "
          f"{aborted} aborted")
    print(f"master exit:       {status}")


if __name__ == "__main__":
    main()
