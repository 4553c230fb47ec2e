"""
How many connections one master can feed: the master's CPU time per
connection with a new connection per request, measured with the master on
a core of its own.

    python -m benchmarks.ceiling                 # -c 8,32,256, 2 workers
    python -m benchmarks.ceiling -c 32 --workers 1

The master runs pinned to CPU 0; its workers and wrk share the other
CPUs.  Since the master only accepts and passes descriptors on, the
workers saturate long before it does: what is measured is the master's
CPU time per connection at the rate the workers reach, and from it the
rate at which the master alone would fill its core
(C{1 s / CPU time per connection}).  That is the ceiling of one master: past
it, more workers add nothing to short connections, and the choice is
C{--dispatch shared} (no master in the path) or several clusters behind a
balancer (see docs/performance.md).

Linux only (C{sched_setaffinity}); needs at least 2 CPUs.  Load goes to
127.0.0.1 only and every run is bounded in time.
"""

from __future__ import annotations

import argparse
import os
import sys

from benchmarks import bench


def pin(pid: int, cpus: set[int]) -> None:
    """
    Pin C{pid} and its threads to C{cpus}.
    """
    try:
        tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tasks = [pid]
    for task in tasks:
        try:
            os.sched_setaffinity(task, cpus)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ceiling",
        description="The master's CPU time per connection, on a core of its own.")
    parser.add_argument("--connections", "-c", default="8,32,256")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--threads", "-t", type=int, default=1)
    parser.add_argument("--policy", default="round-robin")
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        parser.error("needs at least 2 CPUs: one for the master, one for the rest")
    masterCPU, rest = {cpus[0]}, set(cpus[1:])
    options.policies = [options.policy]
    options.node = False
    server = bench.servers(options)[1]
    print(f"# {bench.machine()}")
    bench.reportQuietness(f"; master on CPU {cpus[0]}, workers and wrk on "
                          f"{','.join(map(str, sorted(rest)))}")
    # wrk, started by this process, inherits its affinity.
    os.sched_setaffinity(0, rest)
    server.start()
    try:
        master, workers = server.pids()
        pin(master, masterCPU)
        for pid in workers:
            pin(pid, rest)
        print("| -c | conn/s | master us/conn | master CPU % | workers us/conn "
              "| ceiling conn/s (master's core full) |")
        print("|---:|---:|---:|---:|---:|---:|")
        for c in [int(c) for c in options.connections.split(",") if c]:
            result = bench.Result(server.name, "close", c)
            bench.measure(server, "close", bench.atConcurrency(options, c),
                          bench.runWrk, result)
            run = result.runs[-1]
            if not run.requests:
                continue
            perConnection = 1e4 * result.masterCPU[-1] / run.requests
            workers = 1e4 * result.workersCPU[-1] / run.requests
            print(f"| {c} | {run.requests:,.0f} | {perConnection:.1f} "
                  f"| {result.masterCPU[-1]:.0f} | {workers:.1f} "
                  f"| {1e6 / perConnection:,.0f} |", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
