"""
What the cluster's application metrics cost: scrape time and CPU for 8
workers publishing a few hundred series each.

    .venv/bin/python -m benchmarks.appmetrics [--workers 8] [--scrapes 10]
        [--app benchmarks.wideseriesapp.resource]

Starts C{twist cluster --workers N --app benchmarks.seriesapp.resource}
(about 300 series per worker, L{benchmarks.seriesapp}; or C{--app}, such as
L{benchmarks.wideseriesapp}: 19,000 wide gauges per worker) on 127.0.0.1
with a TCP control site, then:

  - idles as long as the scrapes will take, and reads the CPU time the
    master and the workers spent meanwhile (health pings: the baseline);
  - scrapes C{/metrics} C{--scrapes} times, 1.05 s apart (the master
    renders at most once a second; each of these renders afresh), timing
    each answer, and reads the CPU time again, while one client sends
    requests to the app one after the other: the slowest of them says how
    long the master's reactor was taken from handing off connections.

It prints the exposition's size and series, the scrape's wall time
(median, max), the master's own gathering time
(C{twisted_cluster_app_metrics_gather_seconds}), and the CPU per scrape
of the master and of all the workers together, above the baseline.  The
master is stopped (TERM, then KILL) by pid; bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu(pid: int) -> float:
    """
    Seconds of CPU (user + system) process C{pid} used so far.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _get(url: str, bearer: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": bearer})
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def _requests(url: str, stop: threading.Event, latencies: list[float]) -> None:
    """
    GET C{url} one request after the other until C{stop}, recording each
    one's wall time.
    """
    while not stop.is_set():
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
        except OSError:
            continue
        latencies.append(time.perf_counter() - began)
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--scrapes", type=int, default=10)
    parser.add_argument("--app", default="benchmarks.seriesapp.resource")
    args = parser.parse_args()
    serve, control = _free(), _free()
    directory = tempfile.mkdtemp(prefix="tc-appmetrics-")
    token = os.path.join(directory, "token")
    base = f"http://127.0.0.1:{control}/"
    master = subprocess.Popen(
        [sys.executable, "-m", "twisted", "cluster", "--workers", str(args.workers),
         "--app", args.app,
         "--listen", f"tcp:{serve}:interface=127.0.0.1",
         "--control", f"tcp:{control}:interface=127.0.0.1", "--control-token", token],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while len(workers) < args.workers:
            if time.monotonic() > deadline or master.poll() is not None:
                raise SystemExit("benchmarks.appmetrics: the cluster did not start")
            time.sleep(0.3)
            if not os.path.exists(token):
                continue
            with open(token) as f:
                bearer = f"Bearer {f.read().strip()}"
            try:
                status = json.loads(_get(base + "status.json", bearer))
            except OSError:
                continue
            workers = [w["pid"] for w in status["workers"] if w["state"] == "ready"]
        _get(base + "metrics", bearer)  # the first gathering, not measured
        pids = [master.pid, *workers]
        period = args.scrapes * 1.05
        latencies: list[float] = []
        stop = threading.Event()
        client = threading.Thread(
            target=_requests, args=(f"http://127.0.0.1:{serve}/", stop, latencies))
        client.start()
        walls: list[float] = []
        try:
            idle = [_cpu(pid) for pid in pids]
            time.sleep(period)
            quiet = len(latencies)
            before = [_cpu(pid) for pid in pids]
            for _ in range(args.scrapes):
                time.sleep(1.05)
                began = time.perf_counter()
                body = _get(base + "metrics", bearer)
                walls.append(time.perf_counter() - began)
        finally:
            stop.set()
            client.join(15)
        after = [_cpu(pid) for pid in pids]
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(15)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
        shutil.rmtree(directory, True)
    from prometheus_client.parser import text_string_to_metric_families

    families = list(text_string_to_metric_families(body.decode()))
    series = sum(len(f.samples) for f in families)
    app = sum(len(f.samples) for f in families if f.name.startswith("bench_"))
    gather = next(
        f.samples[0].value for f in families
        if f.name == "twisted_cluster_app_metrics_gather_seconds"
    )
    baseline = [b - i for b, i in zip(before, idle)]
    spent = [a - b - base_ for a, b, base_ in zip(after, before, baseline)]
    print(f"workers: {args.workers}, scrapes: {args.scrapes}")
    print(f"exposition: {len(body) / 1024:.0f} KiB, {series} series "
          f"({app} of the app: per worker, per process and worker=\"all\")")
    print(f"scrape wall time: median {statistics.median(walls) * 1000:.1f} ms, "
          f"max {max(walls) * 1000:.1f} ms")
    print(f"master's last gathering: {gather * 1000:.1f} ms")
    print(f"master CPU per scrape: {max(spent[0], 0) / args.scrapes * 1000:.1f} ms "
          f"(idle baseline {baseline[0] / period * 1000:.1f} ms/s)")
    for what, some in (("without scrapes", latencies[:quiet]),
                       ("while scraped", latencies[quiet:])):
        if some:
            print(f"app requests {what}: {len(some)}, median "
                  f"{statistics.median(some) * 1000:.1f} ms, max {max(some) * 1000:.1f} ms")
    print(f"workers' CPU per scrape, all together: "
          f"{max(sum(spent[1:]), 0) / args.scrapes * 1000:.1f} ms")


if __name__ == "__main__":
    main()
