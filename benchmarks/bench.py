"""
Compare C{twist cluster} with one twisted.web process (and Node's cluster).

    /tmp/venv/bin/python -m benchmarks.bench            # the whole comparison
    /tmp/venv/bin/python -m benchmarks.bench --quick    # a short smoke run

Every server serves the same hello world (L{benchmarks.hello}) on
127.0.0.1 without an access log.  Each is driven by wrk (C{-t1 -c32 -d4s}
by default; a small Python load generator when wrk is absent) in two
regimes: keep-alive, and a new connection per request (C{Connection:
close}).  The table gives requests/s, the ratio to the single Twisted
process measured in the same run, wrk's p50/p99 latency, the CPU used
during the run by the master (the process that accepts; for the single
process, the process itself), by the workers and by the load generator, in
percent of one core, and the server's CPU time per request (master plus
workers, in microseconds: what a request costs, which other load on the
machine disturbs less than requests/s).  With C{--rounds N} every server is
measured N times, round after round; the table shows medians, and each
ratio is the median of the ratios measured within one round.  With
matplotlib installed, a chart goes to C{docs/performance.png}.

Load is bounded in time, every process started is killed by pid, and only
127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICIES = ("round-robin", "least-connections", "shared", "sticky")
REGIMES = ("keep-alive", "close")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """
    One server under test: how to start it and how to find its port.

    @ivar name: the label in the table.
    @ivar argv: the command that runs it.
    @ivar readiness: makes, for each start, a reader of the server's output
        lines that returns the port once the server is ready to serve,
        C{None} before.
    """

    name: str
    argv: list[str]
    readiness: Callable[[], Callable[[str], int | None]]
    process: subprocess.Popen | None = None
    port: int | None = None

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        found: list[int] = []
        output: list[str] = []
        ready = self.readiness()

        def read() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                if not found:
                    output.append(line)
                    port = ready(line)
                    if port is not None:
                        found.append(port)
            # Keep draining until exit so that the server never blocks on a
            # full pipe.

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not start:\n" + "".join(output[-20:])
                )
            time.sleep(0.05)
        self.port = found[0]

    def pids(self) -> tuple[int, list[int]]:
        """
        The main process's pid and its children's (the workers).
        """
        assert self.process is not None
        return self.process.pid, _children(self.process.pid)

    def stop(self) -> None:
        """
        Stop the server and everything it started: TERM, then KILL by pid.
        """
        if self.process is None:
            return
        pids = [self.process.pid] + _children(self.process.pid)
        for signum in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                _kill(pid, signum)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.process = None


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def cpuSeconds(pid: int) -> float:
    """
    User plus system CPU seconds used so far by C{pid} (0 once it is gone).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def _jsonListening(workers: int) -> Callable[[str], int | None]:
    """
    Readiness of C{twist --log-format=json cluster}: its port is known and
    C{workers} workers said ready.
    """
    state: dict[str, Any] = {"port": None, "ready": set()}

    def ready(line: str) -> int | None:
        try:
            event = json.loads(line.strip("\x1e \n"))
        except ValueError:
            return None
        fmt = event.get("log_format", "")
        if fmt == "listening on {address}":
            state["port"] = int(event["address"].rsplit(":", 1)[1])
        elif fmt == "worker {worker_id} pid {pid} ready":
            state["ready"].add(event["worker_id"])
        if state["port"] is not None and len(state["ready"]) >= workers:
            return state["port"]
        return None

    return ready


def _plainListening() -> Callable[[str], int | None]:
    def ready(line: str) -> int | None:
        match = re.match(r"listening on (\d+)", line)
        return int(match.group(1)) if match else None

    return ready


def servers(options: argparse.Namespace) -> list[Server]:
    """
    The servers to compare, the single Twisted process first (the baseline).
    """
    python = sys.executable
    found = [Server("twisted single process", [python, "-m", "benchmarks.single"],
                    _plainListening)]
    for policy in options.policies:
        found.append(Server(
            f"twist cluster {options.workers}w {policy}",
            [python, "-m", "twisted", "--log-format=json",
             "cluster", "--workers", str(options.workers),
             "--app", "benchmarks.hello.resource",
             "--listen", "tcp:0:interface=127.0.0.1"]
            # The default needs no option: the benchmark also runs on trees
            # that predate --dispatch (for before/after figures).
            + ([] if policy == "round-robin" else ["--dispatch", policy]),
            lambda: _jsonListening(options.workers),
        ))
    node = shutil.which("node")
    if node and options.node:
        script = os.path.join(ROOT, "benchmarks", "node_cluster.js")
        found.append(Server("node single process", [node, script, "single"],
                            _plainListening))
        for mode, label in (("rr", "round-robin"), ("none", "SCHED_NONE")):
            found.append(Server(
                f"node cluster {options.workers}w {label}",
                [node, script, mode, str(options.workers)], _plainListening,
            ))
    return found


@dataclass
class Load:
    """
    The outcome of one load run.
    """

    requests: float = 0.0
    p50: float | None = None
    p99: float | None = None
    errors: int = 0
    loadCPU: float = 0.0


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def parseWrk(output: str) -> Load:
    """
    Read requests/s, the p50/p99 latency (ms) and the error count from
    C{wrk --latency}'s report.
    """
    load = Load()
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match:
        load.requests = float(match.group(1))
    for percent, name in (("50", "p50"), ("99", "p99")):
        match = re.search(rf"^\s+{percent}%\s+(\S+)", output, re.M)
        if match:
            setattr(load, name, _ms(match.group(1)))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      output)
    if match:
        # wrk counts the server's orderly close after a Connection: close
        # answer as a read error; count connect errors and timeouts only.
        load.errors += int(match.group(1)) + int(match.group(4))
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match:
        load.errors += int(match.group(1))
    return load


def runWrk(port: int, regime: str, options: argparse.Namespace, duration: float) -> Load:
    # wrk takes whole seconds.
    argv = ["wrk", f"-t{options.threads}", f"-c{options.connections}",
            f"-d{max(round(duration), 1)}s", "--latency", "--timeout", "5s"]
    if regime == "close":
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}/")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True,
                         timeout=duration + 30).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = parseWrk(out)
    load.loadCPU = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return load


def runPython(port: int, regime: str, options: argparse.Namespace, duration: float) -> Load:
    """
    A fallback load generator when wrk is absent: C{connections} clients on
    asyncio, each sending its requests one after the other.
    """
    import asyncio

    request = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               + (b"Connection: close\r\n" if regime == "close" else b"") + b"\r\n")
    latencies: list[float] = []
    errors = [0]

    async def readResponse(reader: asyncio.StreamReader) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"content-length:\s*(\d+)", head, re.I)
        await reader.readexactly(int(match.group(1)) if match else 0)

    async def client(deadline: float) -> None:
        writer = None
        while time.monotonic() < deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                start = time.monotonic()
                writer.write(request)
                await readResponse(reader)
                latencies.append((time.monotonic() - start) * 1000)
                if regime == "close":
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError):
                errors[0] += 1
                writer = None
        if writer is not None:
            writer.close()

    async def main() -> None:
        deadline = time.monotonic() + duration
        await asyncio.gather(*(client(deadline) for _ in range(options.connections)))

    cpu = time.process_time()
    asyncio.run(main())
    latencies.sort()
    load = Load(requests=len(latencies) / duration, errors=errors[0],
                loadCPU=time.process_time() - cpu)
    if latencies:
        load.p50 = latencies[len(latencies) // 2]
        load.p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return load


@dataclass
class Result:
    """
    One server in one regime: the load figures and the CPU used meanwhile.
    """

    server: str
    regime: str
    runs: list[Load] = field(default_factory=list)
    masterCPU: list[float] = field(default_factory=list)
    workersCPU: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)

    def median(self, value: Callable[[Load], float | None]) -> float | None:
        values = [v for v in map(value, self.runs) if v is not None]
        return statistics.median(values) if values else None

    @property
    def requests(self) -> float:
        return self.median(lambda r: r.requests) or 0.0

    def ratio(self, base: "Result") -> float | None:
        """
        The median over the rounds of this server's requests/s divided by
        C{base}'s in the same round: a round where the machine was busy
        for both counts as much as a quiet one.
        """
        ratios = [mine.requests / theirs.requests
                  for mine, theirs in zip(self.runs, base.runs) if theirs.requests]
        return statistics.median(ratios) if ratios else None


def measure(server: Server, regime: str, options: argparse.Namespace,
            drive: Callable[..., Load], result: Result) -> None:
    """
    Warm up, then drive C{server} for the run's duration and record its
    figures and the CPU its processes used meanwhile.
    """
    assert server.port is not None
    drive(server.port, regime, options, options.warmup)
    master, workers = server.pids()
    masterBefore = cpuSeconds(master)
    workersBefore = {pid: cpuSeconds(pid) for pid in workers}
    start = time.monotonic()
    load = drive(server.port, regime, options, options.duration)
    elapsed = time.monotonic() - start
    result.runs.append(load)
    result.masterCPU.append(100 * (cpuSeconds(master) - masterBefore) / elapsed)
    result.workersCPU.append(100 * sum(
        cpuSeconds(pid) - before for pid, before in workersBefore.items()) / elapsed)
    if load.requests:
        # CPU time the server's processes spent per request, in us: less
        # sensitive to other load on the machine than requests/s.
        result.costs.append(
            1e4 * (result.masterCPU[-1] + result.workersCPU[-1]) / load.requests)
    load.loadCPU = 100 * load.loadCPU / elapsed


def check(server: Server) -> None:
    """
    Make sure the server answers the hello world before loading it.
    """
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    if b"Hello, world!" not in data:
        raise RuntimeError(f"{server.name} answered {data[:200]!r}")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: dict[tuple[str, str], Result], names: list[str],
          regimes: list[str]) -> str:
    """
    The results as a Markdown table, ratios against the first server.
    """
    lines = ["| server | regime | req/s | vs single Twisted (same round) | p50 ms | p99 ms "
             "| master CPU % | workers CPU % | load gen CPU % | CPU us/req | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for regime in regimes:
        base = results[(names[0], regime)]
        for name in names:
            r = results[(name, regime)]
            ratio = r.ratio(base)
            lines.append(
                f"| {name} | {regime} | {r.requests:,.0f} | {_fmt(ratio, '.2f')}x "
                f"| {_fmt(r.median(lambda l: l.p50), '.2f')} "
                f"| {_fmt(r.median(lambda l: l.p99), '.2f')} "
                f"| {_fmt(statistics.median(r.masterCPU), '.0f')} "
                f"| {_fmt(statistics.median(r.workersCPU), '.0f')} "
                f"| {_fmt(r.median(lambda l: l.loadCPU), '.0f')} "
                f"| {_fmt(statistics.median(r.costs) if r.costs else None, '.0f')} "
                f"| {sum(l.errors for l in r.runs)} |"
            )
    return "\n".join(lines)


def chart(results: dict[tuple[str, str], Result], names: list[str],
          regimes: list[str], path: str, title: str) -> bool:
    """
    Write a grouped bar chart of req/s (ratio to single Twisted on each
    bar) to C{path}; C{False} when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / len(regimes)
    for i, regime in enumerate(regimes):
        base = results[(names[0], regime)]
        values = [results[(n, regime)].requests for n in names]
        ratios = [results[(n, regime)].ratio(base) for n in names]
        xs = [x + (i - (len(regimes) - 1) / 2) * width for x in range(len(names))]
        bars = ax.bar(xs, values, width,
                      label={"keep-alive": "keep-alive",
                             "close": "new connection per request"}[regime])
        for bar, value, ratio in zip(bars, values, ratios):
            ax.annotate(f"{ratio:.2f}x" if ratio else "",
                        (bar.get_x() + bar.get_width() / 2, value),
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace(" ", "\n", 2) for n in names], fontsize=8)
    ax.set_ylabel("requests/s")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def machine() -> str:
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="Compare twist cluster with one twisted.web process (and Node's "
                    "cluster), keep-alive and one new connection per request.")
    parser.add_argument("--quick", action="store_true",
                        help="short runs (2 s, no Node): a smoke test of the set-up")
    parser.add_argument("--duration", type=float, default=4.0,
                        help="seconds of load per server and regime (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of load before each measured run (default 1)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole comparison; the table shows medians")
    parser.add_argument("--connections", "-c", type=int, default=32)
    parser.add_argument("--threads", "-t", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help="comma-separated --dispatch policies to run "
                             f"(default: {','.join(POLICIES)})")
    parser.add_argument("--regimes", default=",".join(REGIMES),
                        help="keep-alive, close, or both (default)")
    parser.add_argument("--no-node", dest="node", action="store_false",
                        help="leave Node's cluster out")
    parser.add_argument("--load", choices=("wrk", "python"), default=None,
                        help="load generator (default: wrk when installed)")
    parser.add_argument("--chart", default=os.path.join(ROOT, "docs", "performance.png"),
                        help="where to write the PNG chart ('' for none)")
    options = parser.parse_args(argv)
    if options.quick:
        options.duration = min(options.duration, 2.0)
        options.warmup = min(options.warmup, 1.0)
        options.node = False
    options.policies = [p for p in options.policies.split(",") if p]
    for policy in options.policies:
        if policy not in POLICIES:
            parser.error(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    options.regimes = [r for r in options.regimes.split(",") if r]
    for regime in options.regimes:
        if regime not in REGIMES:
            parser.error(f"unknown regime {regime!r}; choose from {', '.join(REGIMES)}")
    if options.load is None:
        options.load = "wrk" if shutil.which("wrk") else "python"
    return options


def main(argv: list[str] | None = None) -> None:
    options = parse(sys.argv[1:] if argv is None else argv)
    drive = runWrk if options.load == "wrk" else runPython
    candidates = servers(options)
    names = [s.name for s in candidates]
    results = {(n, r): Result(n, r) for n in names for r in options.regimes}
    command = "python -m benchmarks.bench " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"# {machine()}")
    print(f"# load: {options.load} -t{options.threads} -c{options.connections} "
          f"-d{options.duration:g}s, {options.rounds} round(s)", flush=True)
    for round in range(options.rounds):
        # The baseline first in every round; the others in reverse order
        # every other round, so that a drift of the machine's load over a
        # round does not always favour the same servers.
        others = candidates[1:] if round % 2 == 0 else candidates[:0:-1]
        for server in [candidates[0], *others]:
            server.start()
            try:
                check(server)
                for regime in options.regimes:
                    measure(server, regime, options, drive, results[(server.name, regime)])
                    r = results[(server.name, regime)].runs[-1]
                    print(f"  round {round + 1} {server.name:<40} {regime:<10} "
                          f"{r.requests:>9,.0f} req/s", flush=True)
            finally:
                server.stop()
    print()
    print(table(results, names, options.regimes))
    if options.chart:
        title = (f"hello world, {options.load} -t{options.threads} -c{options.connections} "
                 f"-d{options.duration:g}s on 127.0.0.1; {machine()}")
        if chart(results, names, options.regimes, options.chart, title):
            print(f"\nchart: {os.path.relpath(options.chart, ROOT)}")
        else:
            print("\nno chart: matplotlib is not installed")
    print(f"command: {command}")


if __name__ == "__main__":
    main()
