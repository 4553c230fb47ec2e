"""
Workers that crash while serving: how long is the service without a ready
worker?

    python -m benchmarks.crashes [--how poison|kill] [--workers 2] [--duration 40]

It starts C{twist cluster --app tests.apps.poison.resource} on a free port
of 127.0.0.1 and, once a second, either sends a request to C{/poison}
(whose handler calls C{os._exit}: the worker serving it dies) or SIGKILLs
a ready worker; meanwhile one client sends a GET to C{/} every 50 ms.  At
the end it kills the master and its workers by pid and prints the seconds
during which no worker was ready (from the master's ready and exit
events), the largest restart delay the master chose, and the client's
answered and failed requests.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

from twisted_cluster import logevents

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Cluster:
    """
    The master under test and the times of its workers' ready and exit
    events.
    """

    def __init__(self, workers: int) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "twisted", "--log-format=json", "cluster",
             "--workers", str(workers), "--app", "tests.apps.poison.resource",
             "--listen", "tcp:0:interface=127.0.0.1", "--control", "none"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.port: int | None = None
        self.ready: dict[int, int] = {}
        #: (monotonic time, "ready" or "exit", pid, restart delay or None)
        self.timeline: list[tuple[float, str, int, float | None]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line.lstrip(b"\x1e"))
            except ValueError:
                continue
            now, key = time.monotonic(), event.get("cluster_event")
            if key == logevents.LISTENING:
                self.port = int(event["address"].rsplit(":", 1)[1])
            elif key == logevents.WORKER_READY:
                self.ready[event["worker_id"]] = event["worker_pid"]
                self.timeline.append((now, "ready", event["worker_pid"], None))
            elif key == logevents.WORKER_EXITED:
                self.timeline.append((now, "exit", event["worker_pid"], event.get("delay")))

    def get(self, path: str, timeout: float = 2) -> int:
        assert self.port is not None
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def withoutReady(self, start: float, end: float) -> float:
        """
        Seconds between C{start} and C{end} with no worker ready.
        """
        live: set[int] = set()
        total, since = 0.0, None
        for when, kind, pid, _ in sorted(self.timeline):
            (live.add if kind == "ready" else live.discard)(pid)
            if when >= start and not live and since is None:
                since = when
            elif live and since is not None:
                total += min(when, end) - since
                since = None
        return total + (end - since if since is not None else 0.0)

    def kill(self) -> None:
        """
        SIGKILL the master and every worker it reported, by pid.
        """
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        for pid in {pid for _, _, pid, _ in self.timeline}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--how", choices=("poison", "kill"), default="poison")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=40)
    options = parser.parse_args(argv)
    cluster = Cluster(options.workers)
    try:
        deadline = time.monotonic() + 30
        while cluster.port is None or len(cluster.ready) < options.workers:
            if time.monotonic() > deadline:
                raise SystemExit("crashes: the cluster did not start within 30 s")
            time.sleep(0.05)
        answered = failed = 0
        stopping = threading.Event()

        def client() -> None:
            nonlocal answered, failed
            while not stopping.is_set():
                try:
                    ok = cluster.get("/") == 200
                except OSError:
                    ok = False
                answered, failed = answered + ok, failed + (not ok)
                time.sleep(0.05)

        loader = threading.Thread(target=client)
        loader.start()
        start = time.monotonic()
        crashes = 0
        while time.monotonic() - start < options.duration:
            crashes += 1
            if options.how == "poison":
                try:
                    cluster.get("/poison")
                except OSError:
                    pass
            else:
                pids = list(cluster.ready.values())
                try:
                    os.kill(pids[crashes % len(pids)], signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(max(0.0, start + crashes - time.monotonic()))
        end = time.monotonic()
        stopping.set()
        loader.join()
        delays = [d for _, kind, _, d in cluster.timeline if kind == "exit" and d is not None]
        print(f"{options.how}, {options.workers} workers: {crashes} crashes in {end - start:.1f} s")
        print(f"seconds with no worker ready: {cluster.withoutReady(start, end):.1f}")
        print(f"largest restart delay:        {max(delays, default=0):.2f} s")
        print(f"client GETs answered/failed:  {answered}/{failed}")
    finally:
        cluster.kill()


if __name__ == "__main__":
    main()
