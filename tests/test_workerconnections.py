"""
Unit tests of C{--worker-connections}: the L{Dispatcher} over fake worker
processes and a clock derives each worker's open connections from what it
sent and what the acknowledgements report closed, gives a full worker
nothing while another has room, and holds connections when all are full.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.fakes import FakeProcess
from tests.support import acceptedFD, fdIsOpen
from twisted_cluster import logevents
from twisted_cluster._master.dispatch import LeastConnections, RoundRobin
from twisted_cluster._master.dispatcher import Dispatcher
from twisted_cluster._supervision.process import READY, IWorkerProcess
from twisted_cluster.tap import Options


class CapTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.workers = [FakeProcess(i, 1000 + i, READY) for i in (1, 2)]
        for worker in self.workers:
            verifyObject(IWorkerProcess, worker)
        self.dispatcher = self.make(cap=2)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def make(self, cap: int, policy: Any = None, queueLimit: int = 100) -> Dispatcher:
        return Dispatcher(
            MemoryReactorClock(), policy or RoundRobin(),
            lambda: [w for w in self.workers if w.state == READY], queueLimit, cap,
        )

    def connections(self, count: int) -> list[tuple[int, int]]:
        return [(acceptedFD(self, closeAtEnd=True), 0) for _ in range(count)]

    def send(self, count: int) -> list[tuple[int, int]]:
        connections = self.connections(count)
        self.dispatcher.dispatch(connections, [None] * count)
        return connections

    def logged(self, key: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("cluster_event") == key]

    def test_aFullWorkerGetsNoneWhileAnotherHasRoom(self) -> None:
        """
        Under least-connections too, a batch fills no worker past its cap:
        what the policy would send to a full worker goes to one with room.
        """
        self.dispatcher = self.make(cap=2, policy=LeastConnections())
        w1, w2 = self.workers
        self.send(1)
        self.send(3)
        self.assertEqual((len(w1.sent), len(w2.sent)), (2, 2))
        self.assertEqual(
            [self.dispatcher.openConnections(w) for w in self.workers], [2, 2]
        )

    def test_whenAllAreFullConnectionsWaitNotRefused(self) -> None:
        w1, w2 = self.workers
        self.send(4)
        waiting = self.send(3)
        self.assertEqual((len(w1.sent), len(w2.sent)), (2, 2))
        self.assertEqual((self.dispatcher.waiting, self.dispatcher.capped), (3, 3))
        self.assertEqual(self.dispatcher.dropped, 0)
        self.assertTrue(all(fdIsOpen(fd) for fd, _ in waiting))
        [full] = self.logged(logevents.WORKERS_AT_CAPACITY)
        self.assertEqual(full["cap"], 2)

    def test_closesReportedInAcksReleaseTheWaitingInOrder(self) -> None:
        """
        No round trip: the acknowledgements carry closes, and each close
        lets one waiting connection out, oldest first.
        """
        w1, w2 = self.workers
        self.send(4)
        waiting = self.send(3)
        self.dispatcher.workerAck(w2, 0, 1, [])
        self.assertEqual(w2.sent[-1], waiting[0])
        self.assertEqual((self.dispatcher.waiting, self.dispatcher.capped), (2, 3))
        self.dispatcher.workerAck(w1, 0, 2, [])
        self.assertEqual(w1.sent[-2:], waiting[1:])
        self.assertEqual(self.dispatcher.waiting, 0)
        [room] = self.logged(logevents.WORKER_ROOM_FOR_CONNECTIONS)
        self.assertEqual((room["worker_id"], room["waited"]), (2, 3))

    def test_returnedAndReclaimedConnectionsFreeTheirRoom(self) -> None:
        w1, w2 = self.workers
        sent = self.send(4)
        self.dispatcher.workerReclaimed(w1, [sent[0]])
        self.assertEqual(self.dispatcher.openConnections(w1), 2)
        self.assertEqual(w1.sent[-1], sent[0], "taken back, it fits there again")
        self.dispatcher.workerAck(w2, 0, 0, [sent[1]])
        self.assertEqual(self.dispatcher.openConnections(w2), 1)

    def test_aWorkerGoneTakesItsCountWithIt(self) -> None:
        w1, w2 = self.workers
        self.send(4)
        self.dispatcher.workerLost(w1, [])
        self.assertEqual(self.dispatcher.openConnections(w1), 0)

    def test_noCapCountsNothing(self) -> None:
        self.dispatcher = self.make(cap=0)
        self.send(10)
        self.assertEqual([len(w.sent) for w in self.workers], [5, 5])
        self.assertEqual(self.dispatcher.openConnections(self.workers[0]), 0)
        self.assertEqual(self.dispatcher.capped, 0)

    def test_pastTheQueueLimitTheyAreClosedAsWhenNoWorkerIsReady(self) -> None:
        self.dispatcher = self.make(cap=1, queueLimit=1)
        self.send(2)
        held, closed = self.send(2)
        self.assertTrue(fdIsOpen(held[0]))
        self.assertFalse(fdIsOpen(closed[0]))
        self.assertEqual(
            (self.dispatcher.waiting, self.dispatcher.dropped, self.dispatcher.capped),
            (1, 1, 1),
        )


class OptionTests(SynchronousTestCase):
    def test_theOptionReachesTheConfig(self) -> None:
        options = Options()
        options.parseOptions(["--workers", "2", "--worker-connections", "100"])
        self.assertEqual(options.config().workerConnections, 100)

    def test_withSharedListenersItIsOneClearError(self) -> None:
        """
        With C{--dispatch shared} the kernel hands out connections: the
        master could not keep the cap, so the option is refused at start.
        """
        error = self.assertRaises(
            SystemExit, Options().parseOptions,
            ["--workers", "2", "--worker-connections", "5", "--dispatch", "shared"],
        )
        self.assertIn("--worker-connections needs a --dispatch", str(error))
        self.assertEqual(len(str(error).splitlines()), 1)
