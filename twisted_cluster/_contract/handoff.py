"""
The hand-off channel: accepted connections travel from the master to a
worker as file descriptors over a C{SOCK_SEQPACKET} socketpair.

It is kept apart from the AMP control channel on purpose: a batch of
descriptors is one C{sendmsg} with no parsing on either side, and a large
user message on the control channel never delays a connection.

Wire format
===========
  - master to worker, one message per batch: the payload holds one byte per
    descriptor, the index of the listener it was accepted on; the
    descriptors travel as C{SCM_RIGHTS} ancillary data, in the same order.
    A listener index with the L{LISTENING} bit set marks a listening socket
    that the worker accepts on itself (C{--dispatch shared}), not a client
    connection.
  - worker to master: 12 bytes, three unsigned 32-bit integers in network
    order, C{(taken, closed, returned)}.  The message covers the next
    C{taken + returned} descriptors the master sent, oldest first: the
    first C{taken} are the worker's now (the master closes its copies);
    the C{returned} ones after them never reached the worker, and the
    master hands its own copies to another worker.  C{closed} counts the
    worker's connections that closed since its last message.  Adoptions
    and closes are coalesced: one message at most every C{ackDelay}
    seconds, which the master chooses (see L{HandoffReceiver}), and at once
    when descriptors are returned.

Descriptors the kernel could not deliver
========================================
A worker out of descriptors (C{RLIMIT_NOFILE}), or reading with too small
an ancillary buffer, still receives the whole payload, but the kernel
installs only the descriptors it has room for and discards the rest,
setting C{MSG_CTRUNC}.  It installs them in order and stops at the first
one that does not fit: what arrives is always the first descriptors of
the message, what is lost is its last C{len(payload) - received} ones.
The worker detects it (fewer descriptors than payload bytes), acknowledges
at once what came before them and returns the lost tail in that same
message, so that they are always the last ones it covers; it reads no
further message until that acknowledgement is sent.  The master still
holds its copy of every one of them and hands them to another worker (see
L{twisted_cluster._master.dispatcher}); a listening socket that was lost is closed.

No connection is lost in the hand-off: the master keeps its own copy of
every descriptor it sent until the worker acknowledges it, and it keeps the
worker's end of the socketpair open too (C{peer}).  A message the worker
has not received yet still sits in the receive queue of that end, and a
C{SOCK_SEQPACKET} message is dequeued whole by exactly one C{recvmsg}: the
master can take it back (L{HandoffSender.reclaim}) without any race with
the worker.  So the master knows, at every moment, which connections the
worker never saw:
  - when the worker dies, what is still queued is given back to be served
    by another worker, whole; what the worker had received and not yet
    acknowledged is closed, since it may have read a request from it (the
    client sees its connection closed, as with any request inside a worker
    that crashes);
  - when the worker stalls, what is still queued goes to the other
    workers at once.
Without the peer end (C{peer=None}), every unacknowledged connection is
given back when the worker dies, which is right only if the worker
acknowledges at once (C{ackDelay=0}), before reading a byte.  Since the
acknowledgement no longer guards against loss, it is coalesced: a worker
costs the master one wake-up per C{ackDelay} instead of one per
connection.

A worker whose reactor is stopped or blocked leaves what it was sent
unacknowledged: the sender notices it on a timer (C{stallAfter}), whether
or not the master sends anything more, says so (C{onStall}), and takes
back what the worker has not received (C{onReclaim}).  What the worker did
receive stays its own: it may resume and serve it, and a connection read by
two processes would be answered twice or not at all.
"""

from __future__ import annotations

import array
import errno
import os
import socket
import struct
from collections import deque
from typing import Callable, Iterable, Sequence

from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorFDSet,
    IReactorTime,
    IReadDescriptor,
)
from twisted.python.failure import Failure
from zope.interface import implementer

#: Most descriptors in one message (the kernel's SCM_MAX_FD is 253).
MAX_BATCH = 250
#: The bit of a listener index that marks a listening socket.
LISTENING = 0x80
_ACK = struct.Struct("!III")
_FD_SIZE = array.array("i").itemsize
_ANCILLARY_SPACE = socket.CMSG_SPACE(MAX_BATCH * _FD_SIZE)

def _socketIdentity(fd: int) -> tuple[int, int]:
    """
    What names the socket behind C{fd} whatever the descriptor's number: two
    descriptors of one socket (the master's copy and the one it takes back)
    have the same identity.
    """
    status = os.fstat(fd)
    return status.st_dev, status.st_ino


class HandoffReactor(IReactorFDSet, IReactorTime):
    """
    A reactor that watches descriptors and schedules calls.
    """


#: An accepted connection in the master: (file descriptor, listener index).
Connection = tuple[int, int]


def encodeBatch(connections: Sequence[Connection]) -> tuple[bytes, list]:
    """
    Encode a batch of connections as the payload and ancillary data of one
    C{sendmsg}.
    """
    payload = bytes(index for _, index in connections)
    fds = array.array("i", [fd for fd, _ in connections])
    return payload, [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())]


def decodeBatch(payload: bytes, ancillary: list) -> tuple[list[Connection], int]:
    """
    Decode one message received by C{recvmsg}.

    @return: the (fd, listener index) pairs received, and how many
        descriptors the payload announces that did not arrive (the kernel
        discarded them: see the module docstring); the missing ones are
        always the last ones of the message.  Descriptors without an index
        (a malformed message) are closed.
    """
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % _FD_SIZE)])
    for extra in fds[len(payload) :]:
        os.close(extra)
    return list(zip(fds, payload)), max(len(payload) - len(fds), 0)


def encodeAck(taken: int, closed: int, returned: int = 0) -> bytes:
    """
    Encode a worker's acknowledgement (see the module docstring).
    """
    return _ACK.pack(taken, closed, returned)


def decodeAck(message: bytes) -> tuple[int, int, int]:
    """
    Decode a worker's acknowledgement into (taken, closed, returned).
    """
    return _ACK.unpack(message[: _ACK.size])


def socketpair() -> tuple[socket.socket, socket.socket]:
    """
    A non-blocking C{SOCK_SEQPACKET} pair: (master's end, worker's end).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    return ours, theirs


@implementer(IReadDescriptor)
class HandoffSender:
    """
    The master's end of one worker's hand-off channel.

    @ivar inFlight: descriptors sent and not yet acknowledged, oldest first.
    @ivar waitingSince: since when (reactor time) the worker has had
        connections to acknowledge, or C{None}: a worker whose reactor is
        blocked stops acknowledging long before a health ping times out.
    @ivar stalled: whether the worker has left connections unacknowledged
        for C{stallAfter} seconds and acknowledged nothing since.
    """

    def __init__(
        self,
        reactor: HandoffReactor,
        sock: socket.socket,
        onAck: Callable[[int, int, list[Connection]], None],
        onLost: Callable[[list[Connection]], None],
        stallAfter: float | None = None,
        onStall: Callable[[bool], None] = lambda stalled: None,
        peer: socket.socket | None = None,
        onReclaim: Callable[[list[Connection]], None] = lambda connections: None,
    ) -> None:
        """
        @param sock: the master's end, non-blocking.
        @param onAck: called for each acknowledgement with how many
            connections the worker took, how many of its connections closed,
            and the connections it returned (it never got them: the master
            owns them again and must hand them to another worker).
        @param onLost: called once, with the connections the worker never
            acknowledged, when the channel breaks.
        @param stallAfter: seconds after which unacknowledged connections
            make the worker L{stalled}, checked on a timer of C{reactor}
            (C{None}: never).
        @param onStall: called with C{True} when the worker becomes
            L{stalled}, with C{False} when it acknowledges again.
        @param peer: the worker's end of the channel, kept open by the
            master so that it can take back what the worker has not
            received (see the module docstring); the sender closes it.
        @param onReclaim: called with the connections taken back from a
            stalled worker: the master owns them again and hands them to
            another worker.
        """
        self._reactor = reactor
        self._sock = sock
        self._peer = peer
        self._onReclaim = onReclaim
        self._onAck = onAck
        self._onLost = onLost
        self._stallAfter = stallAfter
        self._onStall = onStall
        self._stallTimer: IDelayedCall | None = None
        self.stalled = False
        #: Connections the worker had received, and not acknowledged, when
        #: it died: closed (see L{close}).
        self.closedWithWorker = 0
        self.inFlight: deque[Connection] = deque()
        self._backlog: deque[Connection] = deque()
        self._lost = False
        self.waitingSince: float | None = None
        reactor.addReader(self)

    def send(self, connections: Iterable[Connection]) -> None:
        """
        Hand C{connections} to the worker.  The master keeps each descriptor
        open until the worker acknowledges it.
        """
        if self._lost:
            self._onLost(list(connections))
            return
        self._backlog.extend(connections)
        self._flush()

    def shareListeners(self, listeners: Iterable[Connection]) -> None:
        """
        Send the worker listening sockets, (fd, listener index) pairs, to
        accept on by itself.  The sender closes C{fd} once the worker
        acknowledges it (pass a duplicate); a listening socket is never given
        back as an unacknowledged connection.
        """
        marked = [(fd, index | LISTENING) for fd, index in listeners]
        if self._lost:
            for fd, _ in marked:
                os.close(fd)
            return
        self._backlog.extend(marked)
        self._flush()

    def _flush(self) -> None:
        backlog = self._backlog
        while backlog:
            batch = [backlog.popleft() for _ in range(min(MAX_BATCH, len(backlog)))]
            payload, ancillary = encodeBatch(batch)
            try:
                self._sock.sendmsg([payload], ancillary)
            except OSError as e:
                backlog.extendleft(reversed(batch))
                if e.errno in (errno.EAGAIN, errno.ENOBUFS):
                    # The worker is behind: retry when it acknowledges.
                    return
                self._lose()
                return
            self.inFlight.extend(batch)
            if self.waitingSince is None:
                self.waitingSince = self._reactor.seconds()
                self._watch()

    def _watch(self) -> None:
        """
        Make sure a stall check is due: one timer at a time, kept across
        acknowledgements (it re-arms itself for what still waits), so that
        a busy channel costs one timer per C{stallAfter}, not one per
        connection.
        """
        if self._stallTimer is None and self._stallAfter is not None and not self.stalled:
            self._stallTimer = self._reactor.callLater(self._stallAfter, self._checkStall)

    def _checkStall(self) -> None:
        self._stallTimer = None
        # An acknowledgement may be waiting for this very turn of the
        # reactor (the master was slow, not the worker): read it first.
        self.doRead()
        if self._lost or self._stallTimer is not None:
            return
        since = self.waitingSince
        if since is None or self._stallAfter is None:
            return
        due = since + self._stallAfter
        now = self._reactor.seconds()
        if now < due:
            self._stallTimer = self._reactor.callLater(due - now, self._checkStall)
            return
        self.stalled = True
        self._onStall(True)
        reclaimed = self.reclaim()
        if reclaimed:
            self._onReclaim(reclaimed)

    @property
    def pending(self) -> int:
        """
        How many connections were handed over and not yet acknowledged.
        """
        return len(self.inFlight) + len(self._backlog)

    def fileno(self) -> int:
        return self._sock.fileno() if not self._lost else -1

    def logPrefix(self) -> str:
        return "HandoffSender"

    def doRead(self) -> None:
        """
        Read the worker's acknowledgements; close the master's copies of what
        it took, and give back what it returned.
        """
        while True:
            try:
                message = self._sock.recv(64)
            except BlockingIOError:
                break
            except OSError:
                self._lose()
                return
            if len(message) < _ACK.size:
                self._lose()
                return
            taken, closed, returned = decodeAck(message)
            inFlight = self.inFlight
            for _ in range(min(taken, len(inFlight))):
                os.close(inFlight.popleft()[0])
            back: list[Connection] = []
            for _ in range(min(returned, len(inFlight))):
                fd, index = inFlight.popleft()
                if index & LISTENING:
                    os.close(fd)
                else:
                    back.append((fd, index))
            if taken or returned:
                # What is left was sent after what was acknowledged: it has
                # waited at most since now.
                self.waitingSince = self._reactor.seconds() if inFlight else None
                self._unstall()
                if inFlight:
                    self._watch()
            self._onAck(taken, closed, back)
        if self._backlog and not self._lost:
            self._flush()

    def connectionLost(self, reason: Failure) -> None:
        self._lose()

    def close(self) -> None:
        """
        The worker is gone: give back what it never received.  The
        acknowledgements it sent before it died are read first, and what it
        received without acknowledging is closed (with the peer end held,
        see the module docstring): a connection it adopted may have had its
        request read, and handing it to another worker would leave the
        client waiting for an answer that never comes.
        """
        if self._lost:
            return
        self.doRead()
        if self._lost:
            return
        unreceived = self.reclaim()
        if self._peer is not None:
            received, self.inFlight = self.inFlight, deque()
            self.closedWithWorker += sum(
                1 for fd, index in received if not index & LISTENING
            )
            for fd, _ in received:
                os.close(fd)
        self.inFlight.extend(unreceived)
        self._lose()

    def alive(self) -> None:
        """
        The worker's reactor runs (it answered a health ping): a stall ends
        now, even when the worker has nothing left to acknowledge because
        everything it had not received was taken back.
        """
        if not self._lost:
            self._unstall()
            if self.inFlight:
                self._watch()

    def _unstall(self) -> None:
        if self.stalled:
            self.stalled = False
            self._onStall(False)

    def reclaim(self) -> list[Connection]:
        """
        Take back every message still waiting in the worker's receive
        queue: the worker never saw those connections.  They leave
        L{inFlight}; listening sockets among them are sent again (the
        worker reads them when it resumes).

        @return: the client connections taken back, in the order they were
            sent; the master owns them again.
        """
        peer = self._peer
        if peer is None or self._lost:
            return []
        firsts: list[tuple[tuple[int, int], int]] = []
        while True:
            try:
                payload, ancillary, _, _ = peer.recvmsg(
                    MAX_BATCH, _ANCILLARY_SPACE,
                    socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC,
                )
            except OSError:
                break
            if not payload:
                break
            received, _ = decodeBatch(payload, ancillary)
            if received:
                # A message travels whole: its first descriptor names it
                # among ours, and its length says how far it goes.
                firsts.append((_socketIdentity(received[0][0]), len(payload)))
            for fd, _ in received:
                os.close(fd)
        if not firsts:
            return []
        back = self._takeBack(firsts)
        self._flush()
        return back

    def _takeBack(self, messages: list[tuple[tuple[int, int], int]]) -> list[Connection]:
        """
        Remove from L{inFlight} the messages that start with a descriptor of
        the given identity and have the given length.
        """
        inFlight = list(self.inFlight)
        wanted = dict(messages)
        keep: list[Connection] = []
        back: list[Connection] = []
        i = 0
        while i < len(inFlight):
            length = wanted.pop(_socketIdentity(inFlight[i][0]), 0) if wanted else 0
            if length:
                for fd, index in inFlight[i : i + length]:
                    if index & LISTENING:
                        self._backlog.append((fd, index))
                    else:
                        back.append((fd, index))
                i += length
            else:
                keep.append(inFlight[i])
                i += 1
        self.inFlight = deque(keep)
        if not keep:
            self.waitingSince = None
        return back

    def _lose(self) -> None:
        if self._lost:
            return
        self._lost = True
        if self._stallTimer is not None:
            if self._stallTimer.active():
                self._stallTimer.cancel()
            self._stallTimer = None
        self._reactor.removeReader(self)
        self._sock.close()
        if self._peer is not None:
            self._peer.close()
        unacknowledged = []
        for fd, index in list(self.inFlight) + list(self._backlog):
            if index & LISTENING:
                os.close(fd)
            else:
                unacknowledged.append((fd, index))
        self.inFlight.clear()
        self._backlog.clear()
        self._onLost(unacknowledged)


@implementer(IReadDescriptor)
class HandoffReceiver:
    """
    The worker's end of the hand-off channel: adopts every descriptor it
    receives and acknowledges it to the master.

    With C{ackDelay=0}, adoptions are acknowledged at once: at the end of
    the read that adopted them, before the reactor gets a chance to read a
    byte from them, so that a master that does not hold the worker's end
    can safely hand back whatever was not acknowledged.  A master that
    holds it (see the module docstring) knows what the worker received
    without being told, and lets the worker coalesce its acknowledgements
    for C{ackDelay} seconds: one message, and one wake-up of the master,
    for every connection adopted meanwhile.  Counts of closed connections,
    which only feed the least-connections policy, are coalesced the same
    way: C{closeDelay} seconds at most, or with the next acknowledgement.

    A message whose descriptors the kernel could not all deliver (see the
    module docstring) is acknowledged at once with its lost tail returned;
    the receiver reads nothing more until that acknowledgement is sent.

    @ivar returned: how many descriptors the master sent that never
        arrived, since the worker started.
    """

    def __init__(
        self,
        reactor: HandoffReactor,
        sock: socket.socket,
        adopt: Callable[[int, int], None],
        onLost: Callable[[], None],
        adoptListener: Callable[[int, int], None] | None = None,
        closeDelay: float = 0.0,
        ackDelay: float = 0.0,
        afterAdopt: Callable[[], None] = lambda: None,
    ) -> None:
        """
        @param sock: the worker's end, non-blocking.
        @param adopt: called with (fd, listener index); it owns C{fd} from
            then on (it closes what it does not keep, and counts it with
            L{connectionClosed}), and must not raise: the receiver
            acknowledges every descriptor it received.
        @param onLost: called when the master's end closes.
        @param adoptListener: called like C{adopt} with a listening socket
            to accept on; without it, listening sockets are closed.
        @param closeDelay: seconds a count of closed connections may wait
            to be coalesced with the next ones (0: the next turn of the
            reactor).
        @param ackDelay: seconds an adoption may wait to be acknowledged
            with the next ones (0: at once, before any byte is read; only
            a master that holds the worker's end may allow more).
        @param afterAdopt: called after each read of the channel that
            adopted connections (and acknowledged them, when C{ackDelay}
            is 0): from then on the worker may read from them.
        """
        self._reactor = reactor
        self._sock = sock
        self._adopt = adopt
        self._adoptListener = adoptListener
        self._onLost = onLost
        self._closeDelay = closeDelay
        self._ackDelay = ackDelay
        self._afterAdopt = afterAdopt
        self._closed = 0
        self._unacknowledged = 0
        self._returned = 0
        self.returned = 0
        self._timer: IDelayedCall | None = None
        self._lost = False
        reactor.addReader(self)

    def fileno(self) -> int:
        return self._sock.fileno() if not self._lost else -1

    def logPrefix(self) -> str:
        return "HandoffReceiver"

    def doRead(self) -> None:
        """
        Adopt every connection waiting on the channel, then acknowledge them
        all in one message, at once or within C{ackDelay} (see
        L{HandoffReceiver}).
        """
        if self._returned:
            # Descriptors to return wait to be acknowledged: what is read
            # next would be counted before them.
            return
        adopted = 0
        adopt = self._adopt
        while True:
            try:
                # Close-on-exec from the start: a subprocess the app spawns
                # must not inherit its clients' connections.
                payload, ancillary, _, _ = self._sock.recvmsg(
                    MAX_BATCH, _ANCILLARY_SPACE, socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                break
            except OSError:
                self._lose()
                return
            if not payload and not ancillary:
                self._lose()
                return
            connections, missing = decodeBatch(payload, ancillary)
            for fd, index in connections:
                adopted += 1
                if not index & LISTENING:
                    adopt(fd, index)
                elif self._adoptListener is not None:
                    self._adoptListener(fd, index & ~LISTENING)
                else:
                    os.close(fd)
            if missing:
                # The kernel discarded the tail of this message (out of
                # descriptors, MSG_CTRUNC): return it at once, behind what
                # came before it, and read nothing more until then.
                self._returned = missing
                self.returned += missing
                self._pause()
                break
        if adopted or self._returned:
            self._unacknowledged += adopted
            if self._ackDelay > 0 and not self._returned:
                self._schedule(self._ackDelay)
            else:
                self.flush()
            self._afterAdopt()

    def _pause(self) -> None:
        """
        Read nothing more until the acknowledgement that returns descriptors
        is sent (L{flush} resumes).
        """
        self._reactor.removeReader(self)

    def connectionClosed(self) -> None:
        """
        Count one closed connection; the master learns it with the next
        acknowledgement, at most C{closeDelay} later.
        """
        self._closed += 1
        self._schedule(self._closeDelay)

    def flush(self) -> None:
        """
        Send the counts waiting now (a worker that exits calls it last, so
        that the master never hands out again what this worker served).
        """
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        if self._lost or not (self._unacknowledged or self._closed or self._returned):
            return
        try:
            self._sock.send(
                encodeAck(self._unacknowledged, self._closed, self._returned)
            )
        except BlockingIOError:
            # The master is behind on reading: the counts wait, nothing is
            # lost, and they go out together a moment later.
            self._schedule(max(self._closeDelay, 0.01))
            return
        except OSError:
            self._lose()
            return
        self._unacknowledged = self._closed = 0
        if self._returned:
            self._returned = 0
            self._reactor.addReader(self)

    def _schedule(self, delay: float) -> None:
        if self._timer is None and not self._lost:
            self._timer = self._reactor.callLater(delay, self._timerFired)

    def _timerFired(self) -> None:
        self._timer = None
        self.flush()

    def connectionLost(self, reason: Failure) -> None:
        self._lose()

    def _lose(self) -> None:
        if self._lost:
            return
        self._lost = True
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        self._reactor.removeReader(self)
        self._sock.close()
        self._onLost()
