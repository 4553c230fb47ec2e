"""
Chaos runs: bounded load on 127.0.0.1 while the cluster is attacked, one
scenario per run.

    python -m benchmarks.chaos [kill] [--workers 4] [--clients 8] [--duration 20]
                               [--kill-every 2] [--hup-every 7]
    python -m benchmarks.chaos descriptors [--workers 2] [--clients 150]
                               [--room 40] [--hold 1] [--duration 10]
    python -m benchmarks.chaos poison [--workers 2] [--clients 8] [--duration 10]
    python -m benchmarks.chaos stop [--workers 2] [--clients 8] [--duration 10]

Each starts C{twist cluster} on a free port of 127.0.0.1, runs C{--clients}
threads of GETs for C{--duration} seconds, then stops the master with
SIGTERM and prints the requests sent, failed (closed, reset or refused
without an answer) and lost (neither answered nor closed: the client gave
up after its time-out), and the master's descriptors and RSS before the
load and after it.

  - C{kill} (the default): sequential GETs on new connections
    (C{benchmarks.hello}); a random ready worker is SIGKILLed every
    C{--kill-every} seconds and the master gets SIGHUP every C{--hup-every}
    seconds.  Only requests already inside a killed worker may fail.
  - C{descriptors}: each client opens a keep-alive connection, sends one
    GET, holds the connection C{--hold} seconds and starts again; each
    worker is left room for C{--room} more descriptors (C{prlimit}), far
    fewer than there are clients.  Nothing may be lost: connections a
    worker has no room for wait in the master (up to C{--queue-limit}).
  - C{poison}: sequential GETs (C{benchmarks.poison}) and, once a second,
    one C{GET /poison} that kills the worker serving it; prints how long
    no worker was ready.
  - C{stop}: sequential GETs; one worker gets SIGSTOP after 2 s and SIGCONT
    at the end; prints how many requests the stopped worker held (answered
    after it resumed) and how many the others served meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Callable, Iterator

from twisted_cluster import logevents

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def masterFigures(pid: int) -> tuple[int, int]:
    """
    Process C{pid}'s open descriptors and resident memory (kB).
    """
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return fds, rss


def leaveRoom(pid: int, room: int) -> None:
    """
    Set process C{pid}'s descriptor limit so that it can open C{room} more
    (the kernel gives the lowest free numbers below the limit).
    """
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    limit = free = 0
    while free < room or limit in used:
        if limit not in used:
            free += 1
        limit += 1
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))


class Cluster:
    """
    The master under test, its port, its log events, and which workers are
    ready at each moment.

    @ivar status: the master's exit status, once stopped.
    """

    def __init__(self, workers: int, app: str, extra: list[str], log: str | None = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "twisted", "--log-format=json", "cluster",
             "--workers", str(workers), "--app", app,
             "--listen", "tcp:0:interface=127.0.0.1", "--control", "none", *extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.port: int | None = None
        self.status: int | None = None
        self.ready: dict[int, int] = {}
        self.readyPids: set[int] = set()
        self.events: Counter[str] = Counter()
        self._log = open(log, "wb") if log else None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def count(self, key: str) -> int:
        """
        How many events the master logged with C{cluster_event} C{key}.
        """
        return self.events[key]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if self._log is not None:
                self._log.write(line)
            try:
                event = json.loads(line.lstrip(b"\x1e"))
            except ValueError:
                continue
            key = event.get("cluster_event")
            self.events[key] += 1
            if key == logevents.LISTENING and self.port is None:
                self.port = int(event["address"].rsplit(":", 1)[1])
            elif key == logevents.WORKER_READY:
                self.ready[event["worker_id"]] = event["worker_pid"]
                self.readyPids.add(event["worker_pid"])
            elif key == logevents.WORKER_EXITED:
                self.readyPids.discard(event["worker_pid"])

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

    def figures(self) -> tuple[int, int]:
        return masterFigures(self.process.pid)

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


@contextlib.contextmanager
def _running(options: argparse.Namespace, app: str) -> Iterator[tuple[Cluster, int]]:
    """
    Start the cluster of a scenario with C{app}, wait for its workers, and
    yield it with its port; stop it on the way out (its exit status in
    C{Cluster.status}), whatever happened meanwhile.
    """
    cluster = Cluster(options.workers, app, [], options.log)
    try:
        cluster.waitReady(options.workers)
        assert cluster.port is not None
        yield cluster, cluster.port
    finally:
        cluster.status = cluster.stop()


def _get(port: int, path: str, timeout: float) -> tuple[str | None, float]:
    """
    One GET on a new connection: (error or C{None}, seconds it took).  A
    client that gives up after C{timeout} reports C{"lost"}.
    """
    started = time.monotonic()
    error = None
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status != 200:
            error = f"status {response.status}"
    except TimeoutError:
        error = "lost"
    except (OSError, http.client.HTTPException) as e:
        error = type(e).__name__
    return error, time.monotonic() - started


def _holdOne(port: int, hold: float, timeout: float, stop: threading.Event) -> str | None:
    """
    Open a keep-alive connection, send one GET, read the answer, keep the
    connection C{hold} seconds, close it.  The error, C{"lost"} when the
    client gave up waiting, or C{None}.
    """
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except TimeoutError:
        return "lost"
    except OSError as e:
        return type(e).__name__
    with sock:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return "closed"
                data += chunk
        except TimeoutError:
            return "lost"
        except OSError as e:
            return type(e).__name__
        stop.wait(hold)
    return None if data.startswith(b"HTTP/1.1 200") else "status"


class Load:
    """
    C{clients} threads that each run C{request} (which returns an error or
    C{None}, and how long it took) until stopped.
    """

    def __init__(self, clients: int, request: Callable[[threading.Event], tuple[str | None, float]]) -> None:
        self.sent = 0
        self.failed = 0
        self.lost = 0
        self.slow = 0
        self.errors: Counter[str] = Counter()
        self._request = request
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _client(self) -> None:
        while not self._stop.is_set():
            error, took = self._request(self._stop)
            with self._lock:
                self.sent += 1
                self.slow += took > 1.0
                if error == "lost":
                    self.lost += 1
                elif error:
                    self.failed += 1
                if error:
                    self.errors[error] += 1

    def stop(self, timeout: float = 35) -> None:
        """
        Stop the clients and wait for each one's last request (its answer
        or its time-out).
        """
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))


def _report(cluster: Cluster, load: Load, elapsed: float, before: tuple[int, int],
            after: tuple[int, int], status: int | None) -> None:
    print(f"requests sent:     {load.sent} ({load.sent / elapsed:.0f}/s)")
    print(f"requests failed:   {load.failed} "
          f"({100.0 * load.failed / max(load.sent, 1):.3f}%) {dict(load.errors)}")
    print(f"requests lost:     {load.lost} (neither answered nor closed)")
    print(f"master fds/RSS:    {before[0]} fds {before[1] / 1024:.1f} MB before, "
          f"{after[0]} fds {after[1] / 1024:.1f} MB after")
    print(f"master exit:       {status}")


def _settle(cluster: Cluster, baseline: int, seconds: float = 5) -> tuple[int, int]:
    """
    The master's figures once its descriptors are back to C{baseline} (the
    last closes travel a moment), or after C{seconds}.
    """
    deadline = time.monotonic() + seconds
    figures = cluster.figures()
    while figures[0] > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
        figures = cluster.figures()
    return figures


def runKill(options: argparse.Namespace) -> None:
    rng = random.Random(options.seed)
    kills = hups = 0
    with _running(options, "benchmarks.hello.resource") as (cluster, port):
        before = cluster.figures()
        load = Load(options.clients, lambda stop: _get(port, "/", 10))
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
        after = _settle(cluster, before[0])

    print(f"kill: workers {options.workers}, clients {options.clients}, "
          f"{elapsed:.1f} s, SIGKILL every {options.kill_every:g} s, "
          f"SIGHUP every {options.hup_every:g} s")
    _report(cluster, load, elapsed, before, after, cluster.status)
    print(f"workers killed:    {kills}")
    print(f"failures per kill: {load.failed / max(kills, 1):.2f}")
    # A SIGHUP during a roll-out extends it: fewer roll-outs than signals.
    done = cluster.count(logevents.ROLLOUT_DONE)
    aborted = cluster.count(logevents.ROLLOUT_ABORTED)
    print(f"SIGHUP:            {hups} sent, {done} roll-outs completed, "
          f"{aborted} aborted")


def runDescriptors(options: argparse.Namespace) -> None:
    with _running(options, "benchmarks.hello.resource") as (cluster, port):
        for pid in cluster.ready.values():
            leaveRoom(pid, options.room)
        before = cluster.figures()
        load = Load(
            options.clients,
            lambda stop: (_holdOne(port, options.hold, 15, stop), 0.0),
        )
        started = time.monotonic()
        peak = before[0]
        while time.monotonic() - started < options.duration:
            time.sleep(0.1)
            peak = max(peak, cluster.figures()[0])
        load.stop()
        elapsed = time.monotonic() - started
        after = _settle(cluster, before[0])
    print(f"descriptors: workers {options.workers} with room for {options.room} "
          f"descriptors each, {options.clients} keep-alive clients holding each "
          f"connection {options.hold:g} s, {elapsed:.1f} s")
    _report(cluster, load, elapsed, before, after, cluster.status)
    print(f"master fds peak:   {peak}")
    print(f"refusal episodes:  {cluster.count(logevents.WORKER_FULL)}")


def runPoison(options: argparse.Namespace) -> None:
    poisoned = 0
    with _running(options, "benchmarks.poison.resource") as (cluster, port):
        before = cluster.figures()
        load = Load(options.clients, lambda stop: _get(port, "/", 10))
        started = time.monotonic()
        nextPoison = started + 1
        noneReady = 0.0
        fewest = options.workers
        last = started
        while time.monotonic() - started < options.duration:
            now = time.monotonic()
            ready = len(cluster.readyPids & set(cluster.workerPids()))
            fewest = min(fewest, ready)
            if not ready:
                noneReady += now - last
            last = now
            if now >= nextPoison:
                threading.Thread(target=_get, args=(port, "/poison", 10), daemon=True).start()
                poisoned += 1
                nextPoison += 1
            time.sleep(0.01)
        load.stop()
        elapsed = time.monotonic() - started
        after = _settle(cluster, before[0])
    print(f"poison: workers {options.workers}, clients {options.clients}, "
          f"{elapsed:.1f} s, one GET /poison a second")
    _report(cluster, load, elapsed, before, after, cluster.status)
    print(f"poison requests:   {poisoned}")
    print(f"workers ready:     at least {fewest}; none ready for {noneReady:.1f} s")


def runStop(options: argparse.Namespace) -> None:
    with _running(options, "benchmarks.hello.resource") as (cluster, port):
        before = cluster.figures()
        load = Load(options.clients, lambda stop: _get(port, "/", 30))
        time.sleep(2)
        victim = cluster.ready[1]
        sentAtStop = load.sent
        os.kill(victim, signal.SIGSTOP)
        try:
            time.sleep(max(options.duration - 2, 1))
            servedMeanwhile = load.sent - sentAtStop
        finally:
            os.kill(victim, signal.SIGCONT)
        load.stop()
        elapsed = options.duration
        after = _settle(cluster, before[0])
    print(f"stop: workers {options.workers}, clients {options.clients}, worker 1 "
          f"stopped (SIGSTOP) from 2 s to {options.duration:g} s, then SIGCONT")
    _report(cluster, load, elapsed, before, after, cluster.status)
    print(f"while stopped:     {servedMeanwhile} requests served by the others, "
          f"{load.slow} held by the stopped worker (answered after SIGCONT)")


SCENARIOS = {"kill": runKill, "descriptors": runDescriptors, "poison": runPoison,
             "stop": runStop}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", default="kill", choices=sorted(SCENARIOS))
    parser.add_argument("--workers", type=int)
    parser.add_argument("--clients", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--kill-every", type=float, default=2.0)
    parser.add_argument("--hup-every", type=float, default=7.0)
    parser.add_argument("--room", type=int, default=40,
                        help="descriptors each worker may still open (descriptors)")
    parser.add_argument("--hold", type=float, default=1.0,
                        help="seconds each keep-alive connection is held (descriptors)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", help="write the master's JSON log here")
    options = parser.parse_args(argv)
    defaults = {"kill": (4, 8, 20.0), "descriptors": (2, 150, 10.0)}
    workers, clients, duration = defaults.get(options.scenario, (2, 8, 10.0))
    options.workers = options.workers or workers
    options.clients = options.clients or clients
    options.duration = options.duration or duration
    SCENARIOS[options.scenario](options)


if __name__ == "__main__":
    main()
