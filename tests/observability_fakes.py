"""
Stand-ins for the master's service, as read by L{twisted_cluster._control.metrics}
and L{twisted_cluster._control.site}: plain data, no processes (the
processes and the supervisor are those of L{tests.fakes}).
"""

from __future__ import annotations

import attr
from twisted.internet.defer import Deferred

from tests.fakes import FakeProcess, FakeSupervisor


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
