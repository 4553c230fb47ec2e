"""
Tests for L{twisted_cluster.acceptor}: a real listening socket on
127.0.0.1, a L{MemoryReactorClock}, and C{doRead} called by the test.
"""

import errno
import os
import socket

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster.acceptor import Acceptor


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

    def coalescingAfterOneConnection(self) -> Acceptor:
        """
        An acceptor that coalesces for 1 ms, right after it accepted one
        connection.
        """
        acceptor = Acceptor(
            self.reactor, self.reactor, self.listening, self.batches.append,
            coalesce=0.001,
        )
        self.addCleanup(self.closeAccepted)
        acceptor.resume()
        self.connect(1)
        acceptor.doRead()
        return acceptor

    def test_connectionsArrivingBackToBackAreAcceptedTogether(self) -> None:
        """
        After a batch, the acceptor leaves the socket alone for C{coalesce}
        seconds: what arrives meanwhile is accepted in one batch after it.
        """
        acceptor = self.coalescingAfterOneConnection()
        self.assertNotIn(acceptor, self.reactor.getReaders())
        self.connect(3)
        acceptor.resume()  # a worker becoming ready does not cut the wait short
        self.assertNotIn(acceptor, self.reactor.getReaders())
        self.reactor.advance(0.001)
        self.assertIn(acceptor, self.reactor.getReaders())
        acceptor.doRead()
        self.assertEqual([len(b) for b in self.batches], [1, 3])

    def test_pauseDuringTheCoalescingWaitStaysPaused(self) -> None:
        acceptor = self.coalescingAfterOneConnection()
        acceptor.pause()
        self.reactor.advance(1)
        self.assertTrue(acceptor.paused)
        self.assertNotIn(acceptor, self.reactor.getReaders())
