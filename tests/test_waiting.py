"""
Tests for the master's waiting queue and its dispatch to the policy: while
no worker is ready, accepted connections wait (up to C{queueLimit}; past it
they are closed and counted) and go out as soon as a worker is ready.

The master runs with a L{MemoryReactorClock} and fake worker processes;
the connections are real descriptors, so that closing them shows.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import FakeProcess, FakeSupervisor
from tests.support import acceptedFD, fdIsOpen
from twisted_cluster import logevents
from twisted_cluster._master.config import ClusterConfig
from twisted_cluster._master.dispatch import LeastConnections, Sticky
from twisted_cluster._master.dispatcher import REFUSAL_REST, STALL_LOG_AFTER
from twisted_cluster._master.service import ClusterService
from twisted_cluster._supervision.process import READY, STOPPED
from twisted_cluster.errors import ClusterFailed


def readyWorker(workerId: int) -> FakeProcess:
    """
    A ready worker process as the master sees it: it records what it is sent.
    """
    return FakeProcess(workerId, 1000 + workerId, READY)


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
        return [
            (acceptedFD(self, closeAtEnd=True), ("10.0.0.%d" % i, 5000))
            for i in range(count)
        ]

    def ready(self, worker: FakeProcess) -> None:
        self.supervisor.extra.append(worker)
        # What the supervisor tells its observers.
        self.service.workerReady(worker)
        self.service.dispatcher.workerReady(worker)

    def test_connectionsWaitForTheFirstReadyWorker(self) -> None:
        accepted = self.accepted(2)
        self.service._sink(0)(accepted)
        worker = readyWorker(1)
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
        worker = readyWorker(1)
        self.ready(worker)
        self.assertEqual(worker.sent, [(fd, 0) for fd, _ in accepted[:2]])
        keys = [e.get("cluster_event") for e in self.events]
        self.assertEqual(
            [k for k in keys if k and k.startswith("queue")],
            [logevents.QUEUE_FULL, logevents.QUEUE_RELEASED],
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
        one, two = readyWorker(1), readyWorker(2)
        self.supervisor.extra.extend([one, two])
        service.workerReady(one)
        service.dispatcher.workerReady(one)
        self.assertEqual((one.sent, two.sent), ([], [(accepted[0][0], 0)]))

    def test_workerThatLeftGetsNoMoreConnections(self) -> None:
        one, two = readyWorker(1), readyWorker(2)
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
        worker = readyWorker(1)
        self.supervisor.extra.append(worker)
        service._sink(0)(self.accepted(3))
        self.assertEqual(policy.openConnections(worker), 3)
        service.dispatcher.workerAck(worker, 3, 2, [])  # type: ignore[arg-type]
        self.assertEqual(policy.openConnections(worker), 1)
        service.dispatcher.workerLost(worker, [])  # type: ignore[arg-type]
        self.assertEqual(policy.openConnections(worker), 0)


class FakeHandoff:
    """
    The part of a hand-off channel the master reads to describe a stalled
    worker.
    """

    waitingSince = 0.0
    pending = 3
    closedWithWorker = 0


class StalledWorkerTests(SynchronousTestCase):
    """
    A worker whose hand-off channel says it stalled (it left connections
    unacknowledged: its reactor is stopped or blocked) gets no new ones
    while another worker acknowledges.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.service = ClusterService(self.clock, ClusterConfig(workers=2))
        self.supervisor = FakeSupervisor()
        self.service.supervisor = self.supervisor  # type: ignore[assignment]
        self.one, self.two = readyWorker(1), readyWorker(2)
        for worker in (self.one, self.two):
            worker.handoff = FakeHandoff()  # type: ignore[assignment]
            self.supervisor.extra.append(worker)
            # What the supervisor tells its observers.
        self.service.workerReady(worker)
        self.service.dispatcher.workerReady(worker)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def dispatch(self, count: int) -> None:
        for _ in range(count):
            self.service.dispatcher.dispatch([(-1, 0)], [None])

    def stall(self, worker: FakeProcess, stalled: bool = True) -> None:
        self.service.dispatcher.workerStalled(worker, stalled)  # type: ignore[arg-type]

    def stallEvents(self) -> list[tuple[str, int, int]]:
        """
        (kind, worker id, pid) of the stall events: C{"stalled"} when it
        began, C{"again"} when it ended.
        """
        return [
            ("stalled" if "pending" in e else "again", e["worker_id"], e["worker_pid"])
            for e in self.events
            if "pending" in e or "stalled_for" in e
        ]

    def test_stalledWorkerIsPassedOver(self) -> None:
        self.stall(self.one)
        self.dispatch(4)
        self.assertEqual((len(self.one.sent), len(self.two.sent)), (0, 4))

    def test_aLongStallIsLoggedOnceAndSoIsItsEnd(self) -> None:
        """
        The stall is logged once it has lasted L{STALL_LOG_AFTER} (counted
        from the oldest unacknowledged connection), whether or not anything
        is dispatched meanwhile; its end too.
        """
        self.stall(self.one)
        self.clock.advance(STALL_LOG_AFTER)
        self.clock.advance(STALL_LOG_AFTER)
        self.stall(self.one, False)
        self.assertEqual(
            self.stallEvents(), [("stalled", 1, 1001), ("again", 1, 1001)]
        )
        warning, end = [e for e in self.events if "pending" in e or "stalled_for" in e]
        self.assertEqual((warning["pending"], warning["seconds"]), (3, STALL_LOG_AFTER))
        self.assertEqual(end["stalled_for"], 2 * STALL_LOG_AFTER)

    def test_aShortStallIsNotLogged(self) -> None:
        self.stall(self.one)
        self.clock.advance(STALL_LOG_AFTER / 2)
        self.stall(self.one, False)
        self.clock.advance(STALL_LOG_AFTER)
        self.assertEqual(self.stallEvents(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_workerThatAcknowledgesAgainIsServedAgain(self) -> None:
        self.stall(self.one)
        self.dispatch(2)
        self.stall(self.one, False)
        self.dispatch(2)
        self.assertEqual((len(self.one.sent), len(self.two.sent)), (1, 3))

    def test_whenEveryWorkerIsStalledAllStayCandidates(self) -> None:
        self.stall(self.one)
        self.stall(self.two)
        self.dispatch(4)
        self.assertEqual((len(self.one.sent), len(self.two.sent)), (2, 2))

    def test_aWorkerThatLeftIsForgotten(self) -> None:
        self.stall(self.one)
        self.service.dispatcher.workerLost(self.one, [])  # type: ignore[arg-type]
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.dispatch(2)
        self.assertEqual((len(self.one.sent), len(self.two.sent)), (1, 1))


class RefusedConnectionsTests(SynchronousTestCase):
    """
    A worker out of descriptors returns what it could not take: the master
    hands it to another worker, sends that worker nothing for a while, and
    keeps connections waiting (up to C{queueLimit}) while every worker is
    full.  The connections are real descriptors, so that a leak or a close
    shows.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.service = ClusterService(self.clock, ClusterConfig(workers=2, queueLimit=2))
        self.supervisor = FakeSupervisor()
        self.service.supervisor = self.supervisor  # type: ignore[assignment]
        self.one, self.two = readyWorker(1), readyWorker(2)
        for worker in (self.one, self.two):
            self.supervisor.extra.append(worker)
            # What the supervisor tells its observers.
        self.service.workerReady(worker)
        self.service.dispatcher.workerReady(worker)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def connections(self, count: int) -> list[tuple[int, int]]:
        return [(acceptedFD(self, closeAtEnd=True), 0) for _ in range(count)]

    def dispatch(self, connections: list[tuple[int, int]]) -> None:
        for connection in connections:
            self.service.dispatcher.dispatch([connection], [None])

    def ack(self, worker: FakeProcess, taken: int, closed: int,
            returned: list[tuple[int, int]]) -> None:
        self.service.dispatcher.workerAck(worker, taken, closed, returned)  # type: ignore[arg-type]

    def refusalEvents(self) -> list[tuple[str, int, int, int]]:
        """
        (kind, worker id, pid, count) of the refusal events: C{"full"} when
        an episode began, C{"again"} when it ended.
        """
        return [
            ("full" if "refused" in e else "again", e["worker_id"], e["worker_pid"],
             e.get("refused", e.get("refused_total")))
            for e in self.events
            if "refused" in e or "refused_total" in e
        ]

    def test_returnedConnectionsGoToAnotherWorker(self) -> None:
        returned = self.connections(3)
        self.ack(self.one, 1, 0, returned)
        self.assertEqual((self.one.sent, self.two.sent), ([], returned))
        self.assertEqual(self.service.returned, 3)

    def test_aWorkerThatReturnedConnectionsGetsNoneUntilItClosesSome(self) -> None:
        self.ack(self.one, 0, 0, self.connections(1))
        self.dispatch(self.connections(4))
        self.assertEqual((len(self.one.sent), len(self.two.sent)), (0, 5))
        self.ack(self.one, 0, 1, [])
        self.dispatch(self.connections(2))
        self.assertEqual((len(self.one.sent), len(self.two.sent)), (1, 6))

    def test_orUntilItHasRested(self) -> None:
        self.ack(self.one, 0, 0, self.connections(1))
        self.clock.advance(REFUSAL_REST)
        self.dispatch(self.connections(2))
        self.assertEqual((len(self.one.sent), len(self.two.sent)), (1, 2))

    def test_whenEveryWorkerIsFullConnectionsWaitUpToTheQueueLimit(self) -> None:
        """
        Nothing is lost: the connections wait in the master, those past the
        queue limit are closed (their clients see it), and the waiting ones
        go out once a worker has room.
        """
        [connection] = self.connections(1)
        self.ack(self.one, 0, 0, [connection])
        self.assertEqual(self.two.sent, [connection])
        self.ack(self.two, 0, 0, [connection])
        new = self.connections(3)
        self.dispatch(new)
        self.assertEqual(self.service.dropped, 2)
        self.assertEqual([fdIsOpen(fd) for fd, _ in [connection] + new],
                         [True, True, False, False])
        self.ack(self.two, 0, 1, [])
        self.assertEqual(self.two.sent, [connection, connection, new[0]])
        self.assertEqual(self.one.sent, [])

    def test_oneLogLinePerEpisode(self) -> None:
        """
        A worker that keeps returning connections is logged once, and once
        more when it has taken connections for L{REFUSAL_REST} without
        returning any.
        """
        for _ in range(3):
            self.ack(self.one, 0, 0, self.connections(2))
            self.clock.advance(REFUSAL_REST / 2)
        self.ack(self.one, 1, 0, [])
        self.clock.advance(REFUSAL_REST)
        self.ack(self.one, 1, 0, [])
        self.ack(self.one, 1, 0, [])
        self.assertEqual(
            self.refusalEvents(), [("full", 1, 1001, 2), ("again", 1, 1001, 6)]
        )


class GivingUpSupervisor(FakeSupervisor):
    """
    A supervisor that has no ready worker and stops at once when asked.
    """

    def stopNow(self) -> Deferred[None]:
        return succeed(None)


class WhenReadyTests(SynchronousTestCase):
    """
    L{ClusterService.whenReady} fires once a worker is ready and fails with
    L{ClusterFailed} when the cluster gives up first.
    """

    def setUp(self) -> None:
        self.reasons: list[str] = []
        self.service = ClusterService(
            MemoryReactorClock(), ClusterConfig(workers=1), onFatal=self.reasons.append
        )
        self.service.supervisor = GivingUpSupervisor()  # type: ignore[assignment]

    def test_aWaiterFailsWhenTheClusterGivesUp(self) -> None:
        d = self.service.whenReady()
        self.assertNoResult(d)
        self.service._fatal("the app cannot be loaded")
        failure = self.failureResultOf(d, ClusterFailed)
        self.assertEqual(str(failure.value), "the app cannot be loaded")
        self.assertEqual(self.reasons, ["the app cannot be loaded"])

    def test_askingAfterItGaveUpFailsAtOnce(self) -> None:
        self.service._fatal("workers fail to start")
        self.failureResultOf(self.service.whenReady(), ClusterFailed)
