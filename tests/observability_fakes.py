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
    A cluster service with the operations of the real one: those on
    workers are its L{FakeSupervisor}'s, a roll-out is a Deferred the test
    fires, a shutdown is recorded (C{now} or not) in C{shutdowns}.
    """

    def __init__(self, supervisor: FakeSupervisor | None = None) -> None:
        self.supervisor = supervisor
        self.config = FakeConfig()
        self.listeners = [FakeListener("127.0.0.1:8080")]
        self.acceptedCount = 0
        self.redispatched = 0
        self.dropped = 0
        self.waiting = 0
        self.capped = 0
        self.rollouts: list[Deferred[bool]] = []
        self.shutdowns: list[bool] = []
        self.stopping = False

    def accepted(self) -> int:
        return self.acceptedCount

    def shutdown(self, now: bool = False) -> None:
        self.shutdowns.append(now)

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
