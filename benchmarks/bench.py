"""
Compare C{twist cluster} with one twisted.web process (and Node's cluster),
across concurrency.

    python -m benchmarks.bench                  # the whole sweep (about 8 minutes)
    python -m benchmarks.bench -c 8,32 --policies round-robin --no-node
    python -m benchmarks.bench --quick          # a short smoke run

Every server serves the same hello world (L{benchmarks.hello}) on
127.0.0.1 without an access log.  Each is driven by wrk (C{-t1 -d4s}; a
small Python load generator when wrk is absent) at every concurrency of
C{-c} (default 1, 8, 32, 256 and 1024 connections) in two regimes:
keep-alive, and a new connection per request (C{Connection: close}).

Every server is started once and they are measured point by point, one
after the other at each (regime, concurrency), in an order that turns
round every other point and round: a drift of the machine's load weighs on
all of them alike, and each ratio compares runs seconds apart.

The table gives, per point: requests/s, the ratio to the single Twisted
process at the same point (the median of the per-round ratios with
C{--rounds N}), wrk's p50/p99 latency, the server's CPU time per request
(master plus workers, in microseconds: what a request costs, which other
load disturbs less than requests/s), the master's share of it (the
process that accepts: what bounds how many workers one master can feed),
the load generator's own CPU time per request (it runs on the same cores,
so it bounds the ratio two cores can give), and how busy the whole machine was during the run (every process on it,
in percent of all its cores).  Before the sweep it reads the load average
and the CPU time stolen by the hypervisor, and warns when the machine was
not quiet: figures from a loaded machine mislead (issue 7 was closed on
such figures).  With matplotlib installed, a chart of the ratios goes to
C{--chart} (by default in the temporary directory, never in the tree).

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
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted_cluster import logevents

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


#: The two events readiness needs, as trees older than the C{cluster_event}
#: keys (before 2026-12) wrote them, for before/after runs of C{cost}.
_LEGACY = {
    "listening on {address}": logevents.LISTENING,
    "worker {worker_id} pid {pid} ready": logevents.WORKER_READY,
}


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
        key = event.get("cluster_event") or _LEGACY.get(event.get("log_format", ""))
        if key == logevents.LISTENING:
            state["port"] = int(event["address"].rsplit(":", 1)[1])
        elif key == logevents.WORKER_READY:
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
    connections = options.connections
    argv = ["wrk", f"-t{min(options.threads, connections)}", f"-c{connections}",
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
    connections: int = 32
    runs: list[Load] = field(default_factory=list)
    masterCPU: list[float] = field(default_factory=list)
    workersCPU: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    masterCosts: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)

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
    machineBefore = machineTimes()
    start = time.monotonic()
    load = drive(server.port, regime, options, options.duration)
    elapsed = time.monotonic() - start
    busy, _ = machineBusy(machineBefore, machineTimes())
    result.busy.append(busy)
    result.runs.append(load)
    result.masterCPU.append(100 * (cpuSeconds(master) - masterBefore) / elapsed)
    result.workersCPU.append(100 * sum(
        cpuSeconds(pid) - before for pid, before in workersBefore.items()) / elapsed)
    if load.requests:
        # CPU time the server's processes spent per request, in us: less
        # sensitive to other load on the machine than requests/s.
        result.costs.append(
            1e4 * (result.masterCPU[-1] + result.workersCPU[-1]) / load.requests)
        result.masterCosts.append(1e4 * result.masterCPU[-1] / load.requests)
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


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


Key = tuple[str, str, int]


def _loadCost(load: Load) -> float | None:
    # The load generator's CPU time per request, in us: on the same cores
    # as the servers, it bounds what two cores can serve (docs/performance.md).
    return 1e4 * load.loadCPU / load.requests if load.requests else None


def table(results: dict[Key, Result], names: list[str], regimes: list[str],
          concurrencies: list[int]) -> str:
    """
    The results as a Markdown table, ratios against the first server at the
    same point.
    """
    lines = ["| regime | -c | server | req/s | vs single Twisted | p50 ms | p99 ms "
             "| CPU us/req | master us/req | load gen us/req | machine busy % | errors |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for regime in regimes:
        for c in concurrencies:
            base = results[(names[0], regime, c)]
            for name in names:
                r = results[(name, regime, c)]
                lines.append(
                    f"| {regime} | {c} | {name} | {r.requests:,.0f} "
                    f"| {_fmt(r.ratio(base), '.2f')}x "
                    f"| {_fmt(r.median(lambda l: l.p50), '.2f')} "
                    f"| {_fmt(r.median(lambda l: l.p99), '.2f')} "
                    f"| {_fmt(_median(r.costs), '.0f')} "
                    f"| {_fmt(_median(r.masterCosts), '.0f')} "
                    f"| {_fmt(r.median(_loadCost), '.0f')} "
                    f"| {_fmt(_median(r.busy), '.0f')} "
                    f"| {sum(l.errors for l in r.runs)} |"
                )
    return "\n".join(lines)


def chart(results: dict[Key, Result], names: list[str], regimes: list[str],
          concurrencies: list[int], path: str, title: str) -> bool:
    """
    Write a chart of each server's ratio to the single Twisted process
    against concurrency, one panel per regime, to C{path}; C{False} when
    matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(regimes), figsize=(12, 5), squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        for name in names:
            ratios = [results[(name, regime, c)].ratio(results[(names[0], regime, c)])
                      for c in concurrencies]
            ax.plot(concurrencies, [r or 0 for r in ratios], marker="o", label=name)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(concurrencies)
        ax.set_xticklabels([str(c) for c in concurrencies])
        ax.set_xlabel("concurrent connections (wrk -c)")
        ax.set_ylabel("requests/s vs one twisted.web process")
        ax.set_title({"keep-alive": "keep-alive",
                      "close": "new connection per request"}[regime])
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def machineTimes() -> list[int]:
    """
    The machine's CPU time so far, from C{/proc/stat}, in ticks: user,
    nice, system, idle, iowait, irq, softirq, steal (zeros elsewhere).
    """
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return [0] * 8


def machineBusy(before: list[int], after: list[int]) -> tuple[float, float]:
    """
    How busy the whole machine was between two L{machineTimes}: the share
    of CPU time not idle, and the share stolen by the hypervisor, in %.
    """
    delta = [b - a for a, b in zip(before, after)]
    total = sum(delta)
    if total <= 0:
        return 0.0, 0.0
    idle = delta[3] + delta[4]
    return 100 * (total - idle) / total, 100 * delta[7] / total


def quietness(sample: float = 1.0) -> tuple[float, float, float]:
    """
    The 1-minute load average, and how busy the machine is and how much
    CPU time is stolen from it over C{sample} seconds, before a run.
    """
    before = machineTimes()
    time.sleep(sample)
    busy, steal = machineBusy(before, machineTimes())
    return os.getloadavg()[0], busy, steal


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
    parser.add_argument("--connections", "-c", default="1,8,32,256,1024",
                        help="comma-separated wrk -c values to sweep "
                             "(default: 1,8,32,256,1024)")
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
    parser.add_argument("--chart",
                        default=os.path.join(tempfile.gettempdir(), "twisted-cluster-bench.png"),
                        help="where to write the PNG chart ('' for none; default "
                             "in the temporary directory)")
    options = parser.parse_args(argv)
    if options.quick:
        options.duration = min(options.duration, 2.0)
        options.warmup = min(options.warmup, 1.0)
        options.node = False
    options.policies = [p for p in options.policies.split(",") if p]
    for policy in options.policies:
        if policy not in POLICIES:
            parser.error(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    try:
        options.concurrencies = [int(c) for c in options.connections.split(",") if c]
    except ValueError:
        parser.error(f"-c takes comma-separated numbers, not {options.connections!r}")
    if not options.concurrencies or min(options.concurrencies) < 1:
        parser.error("-c takes numbers of connections of 1 or more")
    options.regimes = [r for r in options.regimes.split(",") if r]
    for regime in options.regimes:
        if regime not in REGIMES:
            parser.error(f"unknown regime {regime!r}; choose from {', '.join(REGIMES)}")
    if options.load is None:
        options.load = "wrk" if shutil.which("wrk") else "python"
    return options


def atConcurrency(options: argparse.Namespace, connections: int) -> argparse.Namespace:
    """
    C{options} for one point of a sweep: C{connections} concurrent clients.
    """
    point = argparse.Namespace(**vars(options))
    point.connections = connections
    return point


def reportQuietness(where: str = "") -> None:
    """
    Print how quiet the machine is before a run (L{quietness}), with
    C{where} the processes will run, and a warning when it is not quiet.
    """
    load, busy, steal = quietness()
    print(f"# before the run: load average (1 min) {load:.2f}; over the last second "
          f"the machine was {busy:.0f}% busy, {steal:.1f}% stolen{where}", flush=True)
    if load > 1.5 or busy > 15 or steal > 2:
        print("# WARNING: the machine is not quiet: other load distorts every figure "
              "(ratios least, requests/s most); quote none of them", flush=True)


def main(argv: list[str] | None = None) -> None:
    options = parse(sys.argv[1:] if argv is None else argv)
    drive = runWrk if options.load == "wrk" else runPython
    candidates = servers(options)
    names = [s.name for s in candidates]
    points = [(r, c) for r in options.regimes for c in options.concurrencies]
    results = {(n, r, c): Result(n, r, c) for n in names for r, c in points}
    command = "python -m benchmarks.bench " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"# {machine()}")
    print(f"# load: {options.load} -t{options.threads} -c{options.connections} "
          f"-d{options.duration:g}s, {options.rounds} round(s)", flush=True)
    reportQuietness()
    started: list[Server] = []
    try:
        for server in candidates:
            server.start()
            started.append(server)
            check(server)
        turn = 0
        for round in range(options.rounds):
            for regime, c in points:
                # The order turns round at every point, so that a drift of
                # the machine's load does not always favour the same servers.
                order = candidates if turn % 2 == 0 else candidates[::-1]
                turn += 1
                for server in order:
                    result = results[(server.name, regime, c)]
                    measure(server, regime, atConcurrency(options, c), drive, result)
                    r = result.runs[-1]
                    print(f"  round {round + 1} {regime:<10} -c{c:<5} {server.name:<36} "
                          f"{r.requests:>9,.0f} req/s", flush=True)
    finally:
        for server in started:
            server.stop()
    print()
    print(table(results, names, options.regimes, options.concurrencies))
    if options.chart:
        title = (f"hello world, {options.load} -t{options.threads} -d{options.duration:g}s "
                 f"on 127.0.0.1; {machine()}")
        if chart(results, names, options.regimes, options.concurrencies,
                 options.chart, title):
            print(f"\nchart: {options.chart}")
        else:
            print("\nno chart: matplotlib is not installed")
    print(f"command: {command}")


if __name__ == "__main__":
    main()
