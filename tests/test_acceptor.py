"""
Tests for L{twisted_cluster._master.acceptor}: a real listening socket on
127.0.0.1, a L{MemoryReactorClock}, and C{doRead} called by the test.
"""

import errno
import os
import socket

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster._master.acceptor import Acceptor


class AcceptorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.listening = socket.socket()
        self.listening.bind(("127.0.0.1", 0))
        self.listening.listen(64)
        self.listening.setblocking(False)
        self.addCleanup(self.listening.close)
        self.reactor = MemoryReactorClock()
        self.batches: list[list] = []
        self.acceptor = Acceptor(
            self.reactor, self.reactor, self.listening, self.batches.append, batch=4
        )

    def connect(self, n: int) -> None:
        for _ in range(n):
            client = socket.create_connection(self.listening.getsockname())
            self.addCleanup(client.close)

    def closeAccepted(self) -> None:
        for batch in self.batches:
            for fd, _ in batch:
                os.close(fd)

    def test_acceptsInBatchesWithoutSocketObjects(self) -> None:
        self.connect(6)
        self.acceptor.doRead()
        self.acceptor.doRead()
        self.acceptor.doRead()
        self.addCleanup(self.closeAccepted)
        self.assertEqual([len(b) for b in self.batches], [4, 2])
        fd, peer = self.batches[0][0]
        self.assertIsInstance(fd, int)
        self.assertEqual(peer[0], "127.0.0.1")

    def test_resumeAndPauseWatchTheSocket(self) -> None:
        self.assertTrue(self.acceptor.paused)
        self.acceptor.resume()
        self.assertIn(self.acceptor, self.reactor.getReaders())
        self.acceptor.pause()
        self.assertNotIn(self.acceptor, self.reactor.getReaders())

    def test_acceptAllEmptiesTheBacklog(self) -> None:
        self.connect(10)
        self.acceptor.acceptAll()
        self.addCleanup(self.closeAccepted)
        self.assertEqual(sum(len(b) for b in self.batches), 10)

    def test_outOfDescriptorsPausesThenResumes(self) -> None:
        def exhausted():
            raise OSError(errno.EMFILE, "Too many open files")

        self.acceptor._accept = exhausted
        self.acceptor.resume()
        self.acceptor.doRead()
        self.assertTrue(self.acceptor.paused)
        self.assertEqual(self.acceptor.exhaustedCount, 1)
        self.reactor.advance(0.1)
        self.assertFalse(self.acceptor.paused)

    def test_aLoneConnectionIsHandedOffAtOnce(self) -> None:
        """
        A connection that arrives alone is handed off in the turn that
        accepted it, and the acceptor goes on watching the socket: no timer,
        no wait for company.
        """
        self.acceptor.resume()
        self.addCleanup(self.closeAccepted)
        self.connect(1)
        self.acceptor.doRead()
        self.assertEqual([len(b) for b in self.batches], [1])
        self.assertIn(self.acceptor, self.reactor.getReaders())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_aStreamOfConnectionsIsNeverDelayed(self) -> None:
        """
        Under a steady stream, each connection is handed off in the turn
        after it arrived: the acceptor never leaves the socket alone.
        """
        self.acceptor.resume()
        self.addCleanup(self.closeAccepted)
        for _ in range(5):
            self.connect(1)
            self.acceptor.doRead()
            self.assertIn(self.acceptor, self.reactor.getReaders())
        self.assertEqual([len(b) for b in self.batches], [1] * 5)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_connectionsWaitingTogetherTravelTogether(self) -> None:
        """
        The batch is what is already waiting: connections that arrived
        before the turn are handed off in one batch.
        """
        self.acceptor.resume()
        self.addCleanup(self.closeAccepted)
        self.connect(3)
        self.acceptor.doRead()
        self.assertEqual([len(b) for b in self.batches], [3])

    def test_exhaustionWarningsAreRateLimited(self) -> None:
        """
        Out of descriptors, the acceptor warns once, counts the repeats, and
        sums them up in the next warning at most C{warnEvery} later.
        """
        events: list[dict] = []
        observer = events.append
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

        def exhausted():
            raise OSError(errno.EMFILE, "Too many open files")

        acceptor = Acceptor(
            self.reactor, self.reactor, self.listening, self.batches.append,
            exhaustedPause=0.1, warnEvery=10.0,
        )
        acceptor._accept = exhausted
        acceptor.resume()
        for _ in range(50):  # 5 s of retries every 0.1 s
            acceptor.doRead()
            self.reactor.advance(0.1)
        warnings = [e for e in events if e.get("errno") == errno.EMFILE]
        self.assertEqual(len(warnings), 1)
        for _ in range(60):
            acceptor.doRead()
            self.reactor.advance(0.1)
        warnings = [e for e in events if e.get("errno") == errno.EMFILE]
        self.assertEqual(len(warnings), 2)
        # Every attempt between the two warnings is counted in the second.
        self.assertEqual(warnings[1]["repeated"], warnings[1]["exhausted"] - 2)
        self.assertGreater(warnings[1]["repeated"], 90)
        self.assertEqual(acceptor.exhaustedCount, 110)
