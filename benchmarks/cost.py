"""
What a request costs: CPU time per request of the master and of the
workers, for trees and policies measured in alternation.

    python -m benchmarks.cost single . .:shared /tmp/old-checkout --rounds 3

Each target is C{single} (one twisted.web process) or C{TREE[:POLICY]}: a
source tree of twisted-cluster (C{.} for this one; for a before/after, a
checkout of an older commit with this C{benchmarks/} directory copied in)
run as C{twist cluster --workers 2} with that C{--dispatch} policy.  The
targets are measured one after the other, round after round, so that the
load of a shared machine weighs on all of them alike; the medians are
printed.  CPU time per request moves far less with that load than
requests/s does, which makes it the figure to compare when optimising.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from benchmarks import bench


def _server(target: str, options: argparse.Namespace) -> bench.Server:
    python = sys.executable
    if target == "single":
        return bench.Server("single", [python, "-m", "benchmarks.single"],
                            bench._plainListening)
    options.policies = [target.partition(":")[2] or "round-robin"]
    return bench.servers(options)[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cost",
        description="CPU time per request of the master and workers, "
                    "targets measured in alternation.")
    parser.add_argument("targets", nargs="+", help="single, or TREE[:POLICY]")
    parser.add_argument("--regime", choices=bench.REGIMES, default="close")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", "-c", type=int, default=32)
    parser.add_argument("--threads", "-t", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for target in options.targets:
        tree = target.partition(":")[0]
        if target != "single" and not os.path.isdir(os.path.join(tree, "twisted_cluster")):
            parser.error(f"{tree!r} is not a source tree of twisted-cluster "
                         "(no twisted_cluster/ folder in it)")
    options.node = False
    drive = bench.runWrk
    here = bench.ROOT
    figures: dict[str, list[tuple[float, ...]]] = {t: [] for t in options.targets}
    cpus = os.cpu_count() or 1
    for round in range(options.rounds):
        for target in options.targets:
            server = _server(target, options)
            result = bench.Result(target, options.regime)
            # A server runs from its own tree (Server.start reads ROOT).
            if target != "single":
                bench.ROOT = os.path.abspath(target.partition(":")[0])
            server.start()
            try:
                bench.measure(server, options.regime, options, drive, result)
            finally:
                server.stop()
                bench.ROOT = here
            load = result.runs[0]
            if not load.requests:
                continue
            master = 1e4 * result.masterCPU[0] / load.requests
            workers = 1e4 * result.workersCPU[0] / load.requests
            # How much of the machine the server and the load used: what is
            # left was idle, time no process could use.
            busy = (result.masterCPU[0] + result.workersCPU[0] + load.loadCPU) / cpus
            figures[target].append((load.requests, master, workers, busy))
            print(f"  round {round + 1} {target:<30} {load.requests:>8,.0f} req/s "
                  f"master {master:6.1f} us/req  workers {workers:6.1f} us/req  "
                  f"busy {busy:3.0f}%", flush=True)
    print(f"\nmedians, {options.regime}, {options.rounds} round(s):")
    for target, rows in figures.items():
        if not rows:
            continue
        requests, master, workers, busy = (statistics.median(c) for c in zip(*rows))
        print(f"{target:<30} {requests:>8,.0f} req/s  master {master:6.1f} us/req  "
              f"workers {workers:6.1f} us/req  total {master + workers:6.1f}  "
              f"machine busy {busy:3.0f}%")


if __name__ == "__main__":
    main()
