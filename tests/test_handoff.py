"""
Tests for L{twisted_cluster._contract.handoff}: descriptors cross a real socketpair;
the reactor is a L{MemoryReactorClock} and the tests call C{doRead}.
"""

import os
import resource
import socket
from typing import Callable

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tests.support import acceptedFD, fdIsOpen
from twisted_cluster._contract.handoff import (
    LISTENING,
    decodeAck,
    decodeBatch,
    encodeAck,
    socketpair,
)
from twisted_cluster._supervision.handoffsender import HandoffSender
from twisted_cluster._worker.handoffreceiver import HandoffReceiver


class ChannelMixin:
    """
    A hand-off channel over a real socketpair: the master's sender in
    C{self.sender}, the worker's end in C{self.workerEnd}.
    """

    def makeChannel(self, stallAfter: float | None = None, peer: bool = False) -> None:
        """
        @param peer: whether the master holds the worker's end too (as
            L{twisted_cluster._supervision.process} does).
        """
        self.reactor = MemoryReactorClock()
        masterEnd, workerEnd = socketpair()
        workerEnd.setblocking(False)
        self.reclaimed: list[tuple[int, int]] = []
        self.acks: list[tuple[int, int]] = []
        self.returned: list[tuple[int, int]] = []
        self.lost: list[list[tuple[int, int]]] = []
        self.stalls: list[bool] = []
        self.sender = HandoffSender(
            self.reactor, masterEnd, self.acknowledged, self.lost.append,
            stallAfter=stallAfter, onStall=self.stalls.append,
            peer=workerEnd.dup() if peer else None, onReclaim=self.reclaimed.extend,
        )
        self.workerEnd = workerEnd

    def acknowledged(self, taken: int, closed: int, returned: list[tuple[int, int]]) -> None:
        self.acks.append((taken, closed))
        self.returned.extend(returned)


class HandoffTests(ChannelMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.makeChannel()
        self.adopted: list[tuple[bytes, int]] = []
        self.receiverLost: list[bool] = []

    def receiver(self) -> HandoffReceiver:
        return HandoffReceiver(
            self.reactor, self.workerEnd, self.adopt, lambda: self.receiverLost.append(True)
        )

    def adopt(self, fd: int, index: int) -> None:
        # Read what the "client" wrote through the descriptor we were given
        # (it is ours now).
        self.adopted.append((os.read(fd, 100), index))
        os.close(fd)

    def clientConnection(self, greeting: bytes) -> int:
        """
        A connected pair standing in for an accepted connection; returns the
        server side's fd (the master's copy) after the client wrote.
        """
        return acceptedFD(self, greeting)

    def test_descriptorsReachTheWorkerInOrderWithTheirListener(self) -> None:
        fds = [self.clientConnection(b"a"), self.clientConnection(b"b")]
        self.sender.send([(fds[0], 0), (fds[1], 1)])
        self.receiver().doRead()
        self.assertEqual(self.adopted, [(b"a", 0), (b"b", 1)])

    def test_masterKeepsItsCopyUntilTheWorkerAcknowledges(self) -> None:
        fd = self.clientConnection(b"x")
        self.sender.send([(fd, 0)])
        self.assertTrue(fdIsOpen(fd))
        self.assertEqual(self.sender.pending, 1)
        self.receiver().doRead()
        self.sender.doRead()
        self.assertEqual(self.acks, [(1, 0)])
        self.assertEqual(self.sender.pending, 0)
        self.assertFalse(fdIsOpen(fd))

    def test_unacknowledgedConnectionsComeBackWhenTheWorkerDies(self) -> None:
        fd = self.clientConnection(b"x")
        self.sender.send([(fd, 2)])
        self.workerEnd.close()  # the worker died without reading
        self.sender.doRead()
        self.assertEqual(self.lost, [[(fd, 2)]])
        self.assertTrue(fdIsOpen(fd))
        os.close(fd)

    def test_sendAfterTheWorkerIsGoneGivesTheConnectionsBack(self) -> None:
        self.sender.close()
        self.assertEqual(self.lost, [[]])
        fd = self.clientConnection(b"x")
        self.sender.send([(fd, 0)])
        self.assertEqual(self.lost[-1], [(fd, 0)])
        os.close(fd)

    def test_closedConnectionsTravelWithTheNextAcknowledgement(self) -> None:
        receiver = self.receiver()
        receiver.connectionClosed()
        receiver.connectionClosed()
        receiver.flush()
        self.sender.doRead()
        self.assertEqual(self.acks, [(0, 2)])

    def test_workerNoticesTheMasterGone(self) -> None:
        receiver = self.receiver()
        self.sender.close()
        receiver.doRead()
        self.assertEqual(self.receiverLost, [True])

    def test_manyConnectionsInOneBatch(self) -> None:
        fds = [self.clientConnection(b"%d" % i) for i in range(300)]
        self.sender.send([(fd, 0) for fd in fds])
        self.receiver().doRead()
        self.assertEqual([data for data, _ in self.adopted], [b"%d" % i for i in range(300)])
        self.sender.doRead()
        self.assertEqual(sum(a for a, _ in self.acks), 300)

    def keptDescriptor(self, greeting: bytes) -> int:
        """
        Hand over one connection to a receiver whose adopter keeps what it
        is given; return the descriptor the adopter got.
        """
        kept: list[int] = []
        receiver = HandoffReceiver(
            self.reactor, self.workerEnd, lambda fd, index: kept.append(fd), lambda: None
        )
        self.sender.send([(self.clientConnection(greeting), 0)])
        receiver.doRead()
        [fd] = kept
        self.addCleanup(os.close, fd)
        return fd

    def test_theAdopterOwnsTheDescriptor(self) -> None:
        """
        The receiver passes each descriptor on as it came, without a copy
        of its own to close: what the worker keeps is what it was sent.
        """
        fd = self.keptDescriptor(b"x")
        self.assertTrue(fdIsOpen(fd))
        self.assertEqual(os.read(fd, 10), b"x")

    def test_receivedDescriptorsAreCloseOnExec(self) -> None:
        """
        A subprocess the app spawns does not inherit its clients'
        connections.
        """
        self.assertFalse(os.get_inheritable(self.keptDescriptor(b"x")))

    def test_ackEncoding(self) -> None:
        self.assertEqual(decodeAck(encodeAck(7, 3, 2)), (7, 3, 2))
        self.assertEqual(decodeAck(encodeAck(7, 3)), (7, 3, 0))


def _limitDescriptors(testCase: SynchronousTestCase, room: int) -> Callable[[], None]:
    """
    Lower this process's C{RLIMIT_NOFILE} so that exactly C{room} more
    descriptors can be opened (the kernel gives the lowest free numbers
    below the limit).

    @return: what restores the limit (the test's clean-up calls it too).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def restore() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    testCase.addCleanup(restore)
    used = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    # The listing's own descriptor is closed by now: only count open ones.
    used = [fd for fd in used if fdIsOpen(fd)]
    limit = 0
    free = 0
    while free < room or limit in used:
        if limit not in used:
            free += 1
        limit += 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    return restore


class TruncatedBatchTests(ChannelMixin, SynchronousTestCase):
    """
    A worker out of descriptors receives the whole payload but only the
    descriptors the kernel had room for: it returns the rest, which the
    master hands to another worker.
    """

    def setUp(self) -> None:
        self.makeChannel()
        self.addCleanup(self.workerEnd.close)
        self.adopted: list[bytes] = []
        self.receiver = HandoffReceiver(self.reactor, self.workerEnd, self.adopt, lambda: None)

    def adopt(self, fd: int, index: int) -> None:
        self.adopted.append(os.read(fd, 100))
        os.close(fd)

    def connections(self, count: int, start: int = 0) -> list[tuple[int, int]]:
        return [
            (acceptedFD(self, b"%d" % i, closeAtEnd=True), 0)
            for i in range(start, start + count)
        ]

    def test_aTooSmallAncillaryBufferLosesTheLastDescriptors(self) -> None:
        """
        The kernel installs the first descriptors that fit and discards the
        others: L{decodeBatch} counts the ones missing at the end.
        """
        sent = self.connections(5)
        self.sender.send(sent)
        payload, ancillary, flags, _ = self.workerEnd.recvmsg(
            250, socket.CMSG_SPACE(2 * 4)
        )
        self.assertTrue(flags & socket.MSG_CTRUNC)
        received, missing = decodeBatch(payload, ancillary)
        self.assertEqual((len(received), missing), (2, 3))
        self.assertEqual([os.read(fd, 10) for fd, _ in received], [b"0", b"1"])
        for fd, _ in received:
            os.close(fd)

    def test_aWorkerOutOfDescriptorsReturnsWhatItCouldNotTake(self) -> None:
        """
        With room for two descriptors, a batch of five is taken in part:
        the worker serves the first two, the master closes its copies of
        those and gets the last three back, still open, in order.
        """
        sent = self.connections(5)
        self.sender.send(sent)
        restore = _limitDescriptors(self, 2)
        self.receiver.doRead()
        restore()
        self.sender.doRead()
        self.assertEqual(self.adopted, [b"0", b"1"])
        self.assertEqual(self.acks, [(2, 0)])
        self.assertEqual(self.returned, sent[2:])
        self.assertEqual([fdIsOpen(fd) for fd, _ in sent], [False] * 2 + [True] * 3)
        self.assertEqual(self.sender.pending, 0)
        self.assertEqual(self.receiver.returned, 3)

    def test_nextBatchIsCountedAfterTheReturnedOnes(self) -> None:
        """
        The receiver reads nothing after a truncated message until it has
        returned its tail: the returned descriptors are always the last
        ones an acknowledgement covers, so the master knows which they are.
        """
        first, second = self.connections(3), self.connections(2, start=3)
        self.sender.send(first)
        self.sender.send(second)
        restore = _limitDescriptors(self, 1)
        self.receiver.doRead()
        restore()
        self.receiver.doRead()
        self.sender.doRead()
        self.assertEqual(self.adopted, [b"0", b"3", b"4"])
        self.assertEqual(self.acks, [(1, 0), (2, 0)])
        self.assertEqual(self.returned, first[1:])
        self.assertEqual([fdIsOpen(fd) for fd, _ in first + second],
                         [False, True, True, False, False])

    def test_aReturnedListeningSocketIsClosed(self) -> None:
        listener = socket.socket()
        self.addCleanup(listener.close)
        copy = os.dup(listener.fileno())
        self.sender.shareListeners([(copy, 0)])
        self.workerEnd.recvmsg(250, 0)
        self.workerEnd.send(encodeAck(0, 0, 1))
        self.sender.doRead()
        self.assertEqual(self.returned, [])
        self.assertFalse(fdIsOpen(copy))


class StallTests(ChannelMixin, SynchronousTestCase):
    """
    The sender notices on its own timer that the worker leaves connections
    unacknowledged: nothing needs to be dispatched for it to happen.
    """

    def setUp(self) -> None:
        self.makeChannel(stallAfter=0.01)
        self.addCleanup(self.workerEnd.close)

    def connection(self) -> tuple[int, int]:
        return (acceptedFD(self, closeAtEnd=True), 0)

    def ack(self, taken: int) -> None:
        self.workerEnd.send(encodeAck(taken, 0))
        self.sender.doRead()

    def test_unacknowledgedConnectionsStallTheWorkerWithoutAnotherSend(self) -> None:
        self.sender.send([self.connection()])
        self.reactor.advance(0.0099)
        self.assertEqual(self.stalls, [])
        self.reactor.advance(0.0001)
        self.assertEqual(self.stalls, [True])
        self.assertTrue(self.sender.stalled)

    def test_anAcknowledgementEndsTheStall(self) -> None:
        self.sender.send([self.connection()])
        self.reactor.advance(0.01)
        self.ack(1)
        self.assertEqual(self.stalls, [True, False])
        self.assertFalse(self.sender.stalled)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_aWorkerThatKeepsAcknowledgingNeverStalls(self) -> None:
        """
        Connections that each wait less than the stall time make no stall,
        however long the channel stays busy; one timer at a time.
        """
        for _ in range(10):
            self.sender.send([self.connection()])
            self.reactor.advance(0.006)
            self.assertLessEqual(len(self.reactor.getDelayedCalls()), 1)
            self.ack(1)
        self.reactor.advance(1)
        self.assertEqual(self.stalls, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_aStallAfterAPartialAcknowledgementCountsFromIt(self) -> None:
        self.sender.send([self.connection(), self.connection()])
        self.reactor.advance(0.008)
        self.ack(1)
        self.reactor.advance(0.008)
        self.assertEqual(self.stalls, [])
        self.reactor.advance(0.002)
        self.assertEqual(self.stalls, [True])

    def test_aLostChannelLeavesNoTimer(self) -> None:
        self.sender.send([self.connection()])
        self.sender.close()
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class AcknowledgementTimingTests(ChannelMixin, SynchronousTestCase):
    """
    Adoptions are acknowledged at once; counts of closed connections wait
    up to C{closeDelay} to travel together.
    """

    def setUp(self) -> None:
        self.makeChannel()
        self.adopted: list[int] = []
        self.listeners: list[tuple[int, int]] = []
        self.receiver = HandoffReceiver(
            self.reactor, self.workerEnd, self.adopt,
            lambda: None, adoptListener=self.adoptListener, closeDelay=0.005,
        )
        self.addCleanup(self.workerEnd.close)

    def adopt(self, fd: int, index: int) -> None:
        self.adopted.append(index)
        os.close(fd)

    def adoptListener(self, fd: int, index: int) -> None:
        self.listeners.append((os.fstat(fd).st_ino, index))
        os.close(fd)

    def connection(self) -> int:
        return acceptedFD(self)

    def test_adoptionsAreAcknowledgedBeforeTheReadReturns(self) -> None:
        """
        No time passes between adopting and acknowledging: a worker that
        dies unacknowledged has read nothing from the connections the master
        hands out again.
        """
        self.sender.send([(self.connection(), 0), (self.connection(), 0)])
        self.receiver.doRead()
        self.sender.doRead()
        self.assertEqual(self.acks, [(2, 0)])
        self.assertEqual(self.sender.pending, 0)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_waitingClosesTravelWithTheAdoptions(self) -> None:
        self.receiver.connectionClosed()
        self.sender.send([(self.connection(), 0)])
        self.receiver.doRead()
        self.sender.doRead()
        self.assertEqual(self.acks, [(1, 1)])

    def test_closesAloneReachTheMasterWithinTheDelay(self) -> None:
        self.receiver.connectionClosed()
        self.receiver.connectionClosed()
        self.reactor.advance(0.004)
        self.sender.doRead()
        self.assertEqual(self.acks, [])
        self.reactor.advance(0.001)
        self.sender.doRead()
        self.assertEqual(self.acks, [(0, 2)])

    def test_flushSendsWhatWaitsAndCancelsTheTimer(self) -> None:
        """
        A worker that exits flushes what waits.
        """
        self.receiver.connectionClosed()
        self.receiver.flush()
        self.sender.doRead()
        self.assertEqual(self.acks, [(0, 1)])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_listeningSocketsAreAdoptedAsListeners(self) -> None:
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        self.sender.shareListeners([(os.dup(listener.fileno()), 1)])
        self.receiver.doRead()
        self.assertEqual(self.listeners, [(os.fstat(listener.fileno()).st_ino, 1)])
        self.assertEqual(self.adopted, [])

    def test_listeningSocketsAreNeverGivenBackAsConnections(self) -> None:
        listener = socket.socket()
        self.addCleanup(listener.close)
        copy = os.dup(listener.fileno())
        connection = self.connection()
        self.sender.shareListeners([(copy, 0)])
        self.sender.send([(connection, 0)])
        self.sender.close()
        self.assertEqual(self.lost, [[(connection, 0)]])
        self.assertFalse(fdIsOpen(copy))
        os.close(connection)


class WaitingSinceTests(ChannelMixin, SynchronousTestCase):
    """
    The sender remembers since when its worker has connections to adopt.
    """

    def setUp(self) -> None:
        self.makeChannel()
        self.addCleanup(self.workerEnd.close)

    def connection(self) -> int:
        return acceptedFD(self)

    def ack(self, adopted: int) -> None:
        self.workerEnd.send(encodeAck(adopted, 0))
        self.sender.doRead()

    def test_idleChannelWaitsForNothing(self) -> None:
        self.assertIsNone(self.sender.waitingSince)

    def test_sendingStartsTheWaitAndAFullAcknowledgementEndsIt(self) -> None:
        self.reactor.advance(5)
        self.sender.send([(self.connection(), 0)])
        self.reactor.advance(1)
        self.sender.send([(self.connection(), 0)])
        self.assertEqual(self.sender.waitingSince, 5)
        self.ack(2)
        self.assertIsNone(self.sender.waitingSince)

    def test_aPartialAcknowledgementRestartsTheWait(self) -> None:
        self.sender.send([(self.connection(), 0), (self.connection(), 0)])
        self.reactor.advance(3)
        self.ack(1)
        self.assertEqual(self.sender.waitingSince, 3)


class PeerEndTests(ChannelMixin, SynchronousTestCase):
    """
    A master that holds the worker's end of the channel knows which
    connections the worker never received: it takes those back, whole,
    when the worker dies or stalls, and lets the worker acknowledge late.
    The worker runs on a clock of its own (C{workerClock}) that the tests
    advance only when the worker is meant to run.
    """

    def setUp(self) -> None:
        self.makeChannel(stallAfter=0.01, peer=True)
        self.workerClock = MemoryReactorClock()
        self.adopted: list[int] = []
        self.afterAdopt: list[int] = []

    def receiver(self) -> HandoffReceiver:
        return HandoffReceiver(
            self.workerClock, self.workerEnd, self.adopt, lambda: None,
            ackDelay=0.002, afterAdopt=lambda: self.afterAdopt.append(len(self.adopted)),
        )

    def adopt(self, fd: int, index: int) -> None:
        self.adopted.append(fd)
        self.addCleanup(os.close, fd)

    def connections(self, n: int) -> list[tuple[int, int]]:
        return [(acceptedFD(self), 0) for _ in range(n)]

    def test_adoptionsAreAcknowledgedTogetherWithinTheDelay(self) -> None:
        receiver = self.receiver()
        first, second = self.connections(2)
        self.sender.send([first])
        receiver.doRead()
        self.sender.send([second])
        receiver.doRead()
        self.assertEqual(self.afterAdopt, [1, 2])
        self.sender.doRead()
        self.assertEqual(self.acks, [])  # nothing on the wire yet
        self.workerClock.advance(0.002)
        self.sender.doRead()
        self.assertEqual(self.acks, [(2, 0)])
        self.assertFalse(fdIsOpen(first[0]))
        self.assertFalse(fdIsOpen(second[0]))

    def test_whatTheWorkerNeverReceivedIsGivenBackWhenItDies(self) -> None:
        sent = self.connections(3)
        self.sender.send(sent[:2])
        self.sender.send(sent[2:])
        self.workerEnd.close()  # the worker died without reading
        self.sender.close()
        self.assertEqual(self.lost, [sent])
        self.assertTrue(all(fdIsOpen(fd) for fd, _ in sent))
        self.assertEqual(self.sender.closedWithWorker, 0)

    def test_whatTheWorkerReceivedUnacknowledgedIsClosedWhenItDies(self) -> None:
        """
        The worker may have read a request from a connection it received:
        handing it to another worker would leave the client waiting, so it
        is closed; what it never received is given back.
        """
        receiver = self.receiver()
        received, unreceived = self.connections(2)
        self.sender.send([received])
        receiver.doRead()
        self.sender.send([unreceived])
        self.workerEnd.close()  # died before acknowledging
        self.sender.close()
        self.assertEqual(self.lost, [[unreceived]])
        self.assertFalse(fdIsOpen(received[0]))
        self.assertTrue(fdIsOpen(unreceived[0]))
        self.assertEqual(self.sender.closedWithWorker, 1)

    def test_aStalledWorkerKeepsOnlyWhatItReceived(self) -> None:
        receiver = self.receiver()
        received = self.connections(1)
        queued = self.connections(2)
        self.sender.send(received)
        receiver.doRead()  # then the worker stops: its clock never moves
        self.sender.send(queued[:1])
        self.sender.send(queued[1:])
        self.reactor.advance(0.01)
        self.assertEqual(self.stalls, [True])
        self.assertEqual(self.reclaimed, queued)
        self.assertEqual(list(self.sender.inFlight), received)
        # It resumes: it acknowledges what it has, and finds nothing more.
        self.workerClock.advance(0.002)
        receiver.doRead()
        self.sender.doRead()
        self.assertEqual(self.acks, [(1, 0)])
        self.assertEqual(self.adopted, [self.adopted[0]])
        self.assertEqual(self.sender.pending, 0)
        self.assertEqual(self.stalls, [True, False])

    def test_aStalledWorkerWithNothingLeftReturnsWhenItIsAlive(self) -> None:
        """
        A worker stopped before it received anything has nothing to
        acknowledge once its queue is taken back: its stall ends when it
        shows it runs again (it answers a health ping), not never.
        """
        queued = self.connections(1)
        self.sender.send(queued)
        self.reactor.advance(0.01)
        self.assertEqual((self.stalls, self.reclaimed), ([True], queued))
        self.assertEqual(self.sender.pending, 0)
        self.sender.alive()
        self.assertEqual(self.stalls, [True, False])
        self.assertFalse(self.sender.stalled)

    def test_reclaimFindsMessagesBehindOnesTheWorkerTook(self) -> None:
        """
        The worker and the master dequeue from the same queue: each message
        goes to one of them, and the master recognises its own by the
        sockets they carry, wherever they stand.
        """
        sent = self.connections(3)
        for connection in sent:
            self.sender.send([connection])
        payload, ancillary, _, _ = self.workerEnd.recvmsg(10, 1024)  # the worker takes one
        for _, _, data in ancillary:
            os.close(int.from_bytes(data[:4], "little"))
        self.assertEqual(self.sender.reclaim(), sent[1:])
        self.assertEqual(list(self.sender.inFlight), sent[:1])

    def test_aReclaimedListeningSocketIsSentAgain(self) -> None:
        listener = socket.socket()
        self.addCleanup(listener.close)
        self.sender.shareListeners([(os.dup(listener.fileno()), 0)])
        self.assertEqual(self.sender.reclaim(), [])
        payload, _, _, _ = self.workerEnd.recvmsg(10, 1024)
        self.assertEqual(payload, bytes([LISTENING]))
