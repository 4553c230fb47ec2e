"""
Stand-ins for the master's objects, as read by L{twisted_cluster._control.metrics}
and L{twisted_cluster._control.site}: plain data, no processes.
"""

from __future__ import annotations

from collections import Counter

import attr
from twisted.internet.defer import Deferred

from twisted_cluster._contract.commands import PingFigures
from twisted_cluster._supervision.process import WorkerState


def _state(state: WorkerState | str) -> WorkerState:
    return WorkerState.lookupByValue(state) if isinstance(state, str) else state


@attr.s(auto_attribs=True, eq=False)
class FakeProcess:
    """
    A worker process as the control site reads it; C{state} may be given
    by its name (C{"ready"}).
    """

    workerId: int
    pid: int
    state: WorkerState = attr.ib(default=WorkerState.READY, converter=_state)
    startedAt: float = 0.0
    figures: PingFigures = attr.ib(
        factory=PingFigures,
        converter=lambda f: PingFigures(**f) if isinstance(f, dict) else f,
    )
    dispatched: int = 0
    lastPing: float | None = None


@attr.s(auto_attribs=True)
class FakeSupervisor:
    slots: dict[int, FakeProcess | None] = attr.ib(factory=dict)
    extra: list[FakeProcess] = attr.ib(factory=list)
    restarts: Counter[str] = attr.ib(factory=Counter)
    slotRestartCounts: dict[int, int] = attr.ib(factory=dict)

    def processes(self) -> list[FakeProcess]:
        return [p for _, p in sorted(self.slots.items()) if p] + self.extra

    def slotPids(self) -> dict[int, int | None]:
        return {i: p.pid if p else None for i, p in sorted(self.slots.items())}

    def slotRestarts(self, workerId: int) -> int:
        return self.slotRestartCounts.get(workerId, 0)


@attr.s(auto_attribs=True)
class FakeListener:
    text: str

    def address(self) -> str:
        return self.text


@attr.s(auto_attribs=True)
class FakeConfig:
    workers: int = 2
    maxWorkers: int = 16


class FakeService:
    """
    A cluster service with the operations of the real one: add and remove
    change the slots, remove refuses the last worker, a roll-out is a
    Deferred the test fires.
    """

    def __init__(self, supervisor: FakeSupervisor | None = None) -> None:
        self.supervisor = supervisor
        self.config = FakeConfig()
        self.listeners = [FakeListener("127.0.0.1:8080")]
        self.acceptedCount = 0
        self.redispatched = 0
        self.dropped = 0
        self.rollouts: list[Deferred[bool]] = []
        self.nextPid = 1000

    def accepted(self) -> int:
        return self.acceptedCount

    def addWorker(self) -> int | None:
        assert self.supervisor is not None
        workerId = max(self.supervisor.slots, default=0) + 1
        self.nextPid += 1
        self.supervisor.slots[workerId] = FakeProcess(workerId, self.nextPid, "starting")
        return workerId

    def removeWorker(self) -> int | None:
        assert self.supervisor is not None
        if len(self.supervisor.slots) <= 1:
            return None
        workerId = max(self.supervisor.slots)
        del self.supervisor.slots[workerId]
        return workerId

    def rollingRestart(self) -> Deferred[bool]:
        d: Deferred[bool] = Deferred()
        self.rollouts.append(d)
        return d


def twoWorkers() -> FakeService:
    """
    A service with workers 1 and 2 ready, with figures.
    """
    supervisor = FakeSupervisor(
        slots={
            1: FakeProcess(1, 101, "ready", startedAt=10.0,
                           figures={"open": 3, "served": 40, "rss": 50_000_000},
                           dispatched=43, lastPing=0.002),
            2: FakeProcess(2, 102, "ready", startedAt=20.0,
                           figures={"open": 1, "served": 41, "rss": 60_000_000},
                           dispatched=42, lastPing=0.004),
        },
    )
    return FakeService(supervisor)
