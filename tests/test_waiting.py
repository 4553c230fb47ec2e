"""
Tests for the master's waiting queue and its dispatch to the policy: while
no worker is ready, accepted connections wait (up to C{queueLimit}; past it
they are closed and counted) and go out as soon as a worker is ready.

The master runs with a L{MemoryReactorClock} and fake worker processes;
the connections are real descriptors, so that closing them shows.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster.config import ClusterConfig
from twisted_cluster.dispatch import LeastConnections, Sticky
from twisted_cluster.master import STALL_AFTER, ClusterService
from twisted_cluster.process import READY, STOPPED
from tests.support import fdIsOpen


class FakeWorker:
    """
    A ready worker process as the master sees it: records what it is sent.
    """

    handoff = None

    def __init__(self, workerId: int) -> None:
        self.workerId = workerId
        self.pid = 1000 + workerId
        self.state = READY
        self.sent: list[tuple[int, int]] = []

    def send(self, connections: list[tuple[int, int]]) -> None:
        self.sent.extend(connections)


class FakeSupervisor:
    def __init__(self) -> None:
        self.workers: list[FakeWorker] = []

    def ready(self) -> list[FakeWorker]:
        return [w for w in self.workers if w.state == READY]

    def noteReady(self, worker: FakeWorker) -> None:
        pass


class WaitingQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.service = ClusterService(
            MemoryReactorClock(), ClusterConfig(workers=2, queueLimit=2)
        )
        self.supervisor = FakeSupervisor()
        self.service.supervisor = self.supervisor  # type: ignore[assignment]
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def accepted(self, count: int) -> list[tuple[int, Any]]:
        """
        C{count} connections as the acceptor hands them to the master.
        """
        connections = []
        for i in range(count):
            client, server = socket.socketpair()
            self.addCleanup(client.close)
            fd = server.detach()
            self.addCleanup(lambda fd=fd: fdIsOpen(fd) and os.close(fd))
            connections.append((fd, ("10.0.0.%d" % i, 5000)))
        return connections

    def ready(self, worker: FakeWorker) -> None:
        self.supervisor.workers.append(worker)
        self.service._workerReady(worker)  # type: ignore[arg-type]

    def test_connectionsWaitForTheFirstReadyWorker(self) -> None:
        accepted = self.accepted(2)
        self.service._sink(0)(accepted)
        worker = FakeWorker(1)
        self.ready(worker)
        self.assertEqual(worker.sent, [(fd, 0) for fd, _ in accepted])
        self.assertEqual(self.service.dropped, 0)

    def test_pastTheLimitConnectionsAreClosedAndCounted(self) -> None:
        accepted = self.accepted(5)
        sink = self.service._sink(0)
        sink(accepted[:3])
        sink(accepted[3:])
        self.assertEqual(self.service.dropped, 3)
        self.assertEqual([fdIsOpen(fd) for fd, _ in accepted], [True, True, False, False, False])
        worker = FakeWorker(1)
        self.ready(worker)
        self.assertEqual(worker.sent, [(fd, 0) for fd, _ in accepted[:2]])
        formats = [e["log_format"] for e in self.events]
        self.assertEqual(
            [f for f in formats if "queue" in f],
            [
                "no worker ready and {limit} connections waiting (--queue-limit): "
                "closing new ones until a worker is ready",
                "worker {worker_id} pid {pid} ready: handing out {count} connections "
                "that waited for a worker ({dropped} closed while the queue was full)",
            ],
        )
        self.assertEqual(self.events[-1]["dropped"], 3)

    def test_waitingConnectionsKeepTheirClientForStickyDispatch(self) -> None:
        """
        A client whose connection waited lands where its later connections
        go.
        """
        # Every client hashes to the worker with the highest id; without
        # its address, the waiting connection would go round-robin (to 1).
        policy = Sticky(hash=lambda pair: pair[1].workerId)
        service = ClusterService(
            MemoryReactorClock(), ClusterConfig(workers=2, queueLimit=10), policy=policy
        )
        service.supervisor = self.supervisor  # type: ignore[assignment]
        accepted = self.accepted(1)
        service._sink(0)(accepted)
        one, two = FakeWorker(1), FakeWorker(2)
        self.supervisor.workers.extend([one, two])
        service._workerReady(one)  # type: ignore[arg-type]
        self.assertEqual((one.sent, two.sent), ([], [(accepted[0][0], 0)]))

    def test_workerThatLeftGetsNoMoreConnections(self) -> None:
        one, two = FakeWorker(1), FakeWorker(2)
        self.ready(one)
        self.ready(two)
        sink = self.service._sink(0)
        sink(self.accepted(2))
        one.state = STOPPED
        sink(self.accepted(3))
        self.assertEqual((len(one.sent), len(two.sent)), (1, 4))

    def test_closesInAcknowledgementsReachThePolicy(self) -> None:
        policy = LeastConnections()
        service = ClusterService(MemoryReactorClock(), ClusterConfig(), policy=policy)
        service.supervisor = self.supervisor  # type: ignore[assignment]
        worker = FakeWorker(1)
        self.supervisor.workers.append(worker)
        service._sink(0)(self.accepted(3))
        self.assertEqual(policy.openConnections(worker), 3)
        service._workerAck(worker, 3, 2)  # type: ignore[arg-type]
        self.assertEqual(policy.openConnections(worker), 1)
        service._workerLost(worker, [])  # type: ignore[arg-type]
        self.assertEqual(policy.openConnections(worker), 0)


class FakeHandoff:
    """
    The part of a hand-off channel the master reads to spot a stalled
    worker.
    """

    waitingSince = None


class StalledWorkerTests(SynchronousTestCase):
    """
    A worker that leaves connections unadopted for C{STALL_AFTER} seconds
    (its reactor is blocked) gets no new ones while another worker adopts.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.service = ClusterService(self.clock, ClusterConfig(workers=2))
        self.supervisor = FakeSupervisor()
        self.service.supervisor = self.supervisor  # type: ignore[assignment]
        self.one, self.two = FakeWorker(1), FakeWorker(2)
        for worker in (self.one, self.two):
            worker.handoff = FakeHandoff()  # type: ignore[assignment]
            self.supervisor.workers.append(worker)
            self.service._workerReady(worker)  # type: ignore[arg-type]
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def dispatch(self, count: int) -> None:
        for _ in range(count):
            self.service._dispatch([(-1, 0)], [None])

    def test_stalledWorkerIsPassedOverWithOneLogLine(self) -> None:
        self.one.handoff.waitingSince = self.clock.seconds()  # type: ignore[union-attr]
        self.clock.advance(STALL_AFTER)
        self.dispatch(4)
        self.assertEqual((len(self.one.sent), len(self.two.sent)), (0, 4))
        stalls = [e for e in self.events if "has not adopted" in e["log_format"]]
        self.assertEqual([(e["worker_id"], e["pid"]) for e in stalls], [(1, 1001)])

    def test_aShortWaitIsNoStall(self) -> None:
        self.one.handoff.waitingSince = self.clock.seconds()  # type: ignore[union-attr]
        self.clock.advance(STALL_AFTER / 2)
        self.dispatch(4)
        self.assertEqual((len(self.one.sent), len(self.two.sent)), (2, 2))

    def test_workerThatAdoptsAgainIsServedAgain(self) -> None:
        self.one.handoff.waitingSince = self.clock.seconds()  # type: ignore[union-attr]
        self.clock.advance(STALL_AFTER)
        self.dispatch(2)
        self.one.handoff.waitingSince = None  # type: ignore[union-attr]
        self.dispatch(2)
        self.assertEqual((len(self.one.sent), len(self.two.sent)), (1, 3))

    def test_whenEveryWorkerIsStalledAllStayCandidates(self) -> None:
        for worker in (self.one, self.two):
            worker.handoff.waitingSince = self.clock.seconds()  # type: ignore[union-attr]
        self.clock.advance(STALL_AFTER)
        self.dispatch(4)
        self.assertEqual((len(self.one.sent), len(self.two.sent)), (2, 2))
