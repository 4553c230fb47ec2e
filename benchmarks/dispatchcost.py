"""
What the master's dispatch costs per connection, without sockets: a
L{ClusterService} with two fake ready workers, one connection at a time.

    python -m benchmarks.dispatchcost

Prints nanoseconds per C{_dispatch} call when no worker has connections
to acknowledge (the usual case) and when one has (a busy or stopped
worker: the slow path that passes it over).
"""

from __future__ import annotations

import timeit
from typing import Any

from twisted.internet.testing import MemoryReactorClock

from twisted_cluster._master.config import ClusterConfig
from twisted_cluster._master.service import ClusterService
from twisted_cluster._supervision.process import READY


class _Handoff:
    def __init__(self, waitingSince: float | None) -> None:
        self.waitingSince = waitingSince
        self.pending = 0 if waitingSince is None else 1


class _Worker:
    def __init__(self, workerId: int, waitingSince: float | None) -> None:
        self.workerId = self.pid = workerId
        self.state = READY
        self.handoff = _Handoff(waitingSince)

    def send(self, connections: Any) -> None:
        pass


class _Supervisor:
    def __init__(self, workers: list[_Worker]) -> None:
        self.workers = workers

    def ready(self) -> list[_Worker]:
        return list(self.workers)


def cost(oneWaiting: bool, number: int = 200000) -> float:
    """
    Nanoseconds per single-connection dispatch, best of five.
    """
    service = ClusterService(MemoryReactorClock(), ClusterConfig(workers=2))
    service.supervisor = _Supervisor(  # type: ignore[assignment]
        [_Worker(1, 0.0 if oneWaiting else None), _Worker(2, None)]
    )
    connection, peer = [(-1, 0)], [None]
    best = min(timeit.repeat(
        lambda: service.dispatcher.dispatch(connection, peer), number=number, repeat=5
    ))
    return best / number * 1e9


def main() -> None:
    print(f"no worker waiting:  {cost(False):.0f} ns per dispatch")
    print(f"one worker waiting: {cost(True):.0f} ns per dispatch")


if __name__ == "__main__":
    main()
