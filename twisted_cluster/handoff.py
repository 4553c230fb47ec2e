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
  - worker to master: 8 bytes, two unsigned 32-bit integers in network
    order: how many descriptors the worker adopted since its last message,
    and how many of its connections closed since then.  Adoptions are
    acknowledged in one message per read of the channel, at once; closes
    are coalesced (see L{HandoffReceiver}).

No connection is lost in the hand-off: the master keeps its own copy of
every descriptor it sent until the worker acknowledges it.  When the worker
dies first, L{HandoffSender.connectionLost} gives the unacknowledged
descriptors back so that the master hands them to another worker.
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
_ACK = struct.Struct("!II")
_FD_SIZE = array.array("i").itemsize
_ANCILLARY_SPACE = socket.CMSG_SPACE(MAX_BATCH * _FD_SIZE)

class _FDAndTime(IReactorFDSet, IReactorTime):
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


def decodeBatch(payload: bytes, ancillary: list) -> list[Connection]:
    """
    Decode one message received by C{recvmsg} into (fd, listener index)
    pairs.  Descriptors without an index (a malformed message) are closed.
    """
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % _FD_SIZE)])
    for extra in fds[len(payload) :]:
        os.close(extra)
    return list(zip(fds, payload))


def encodeAck(adopted: int, closed: int) -> bytes:
    """
    Encode a worker's acknowledgement.
    """
    return _ACK.pack(adopted, closed)


def decodeAck(message: bytes) -> tuple[int, int]:
    """
    Decode a worker's acknowledgement into (adopted, closed).
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
    """

    def __init__(
        self,
        reactor: _FDAndTime,
        sock: socket.socket,
        onAck: Callable[[int, int], None],
        onLost: Callable[[list[Connection]], None],
    ) -> None:
        """
        @param sock: the master's end, non-blocking.
        @param onAck: called with (adopted, closed) for each acknowledgement.
        @param onLost: called once, with the connections the worker never
            acknowledged, when the channel breaks.
        """
        self._reactor = reactor
        self._sock = sock
        self._onAck = onAck
        self._onLost = onLost
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
        it adopted.
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
            adopted, closed = decodeAck(message)
            inFlight = self.inFlight
            for _ in range(min(adopted, len(inFlight))):
                os.close(inFlight.popleft()[0])
            if adopted:
                # What is left was sent after what was acknowledged: it has
                # waited at most since now.
                self.waitingSince = self._reactor.seconds() if inFlight else None
            self._onAck(adopted, closed)
        if self._backlog:
            self._flush()

    def connectionLost(self, reason: Failure) -> None:
        self._lose()

    def close(self) -> None:
        """
        The worker is gone: give back what it never acknowledged.  The
        acknowledgements it sent before it died are read first: a connection
        it adopted may have had its request read, and handing it to another
        worker would leave the client waiting for an answer that never comes.
        """
        if not self._lost:
            self.doRead()
        self._lose()

    def _lose(self) -> None:
        if self._lost:
            return
        self._lost = True
        self._reactor.removeReader(self)
        self._sock.close()
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

    Adoptions are acknowledged at once: at the end of the read that adopted
    them, before the reactor gets a chance to read a byte from them.  That
    is what makes the master's hand-back safe: a worker that dies before its
    acknowledgement left has read nothing from those connections, so another
    worker can serve them whole.  (Delaying it to save messages would let a
    dying worker take requests with it that the master then hands out again,
    and those clients would wait forever.)  Counts of closed connections,
    which only feed the least-connections policy, are coalesced:
    C{closeDelay} seconds at most, or with the next acknowledgement.
    """

    def __init__(
        self,
        reactor: _FDAndTime,
        sock: socket.socket,
        adopt: Callable[[int, int], None],
        onLost: Callable[[], None],
        adoptListener: Callable[[int, int], None] | None = None,
        closeDelay: float = 0.0,
        afterAck: Callable[[], None] = lambda: None,
    ) -> None:
        """
        @param sock: the worker's end, non-blocking.
        @param adopt: called with (fd, listener index); it owns C{fd} from
            then on (it closes what it does not keep), and must not raise:
            the receiver acknowledges every descriptor it received.
        @param onLost: called when the master's end closes.
        @param adoptListener: called like C{adopt} with a listening socket
            to accept on; without it, listening sockets are closed.
        @param closeDelay: seconds a count of closed connections may wait
            to be coalesced with the next ones (0: the next turn of the
            reactor).
        @param afterAck: called after each read that adopted connections,
            once their acknowledgement left: from then on the worker may
            read from them (see L{HandoffReceiver}).
        """
        self._reactor = reactor
        self._sock = sock
        self._adopt = adopt
        self._afterAck = afterAck
        self._adoptListener = adoptListener
        self._onLost = onLost
        self._closeDelay = closeDelay
        self._closed = 0
        self._unacknowledged = 0
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
        all in one message, at once (see L{HandoffReceiver}).
        """
        adopted = 0
        adopt = self._adopt
        while True:
            try:
                # Close-on-exec from the start: a subprocess the app spawns
                # must not inherit its clients' connections.
                payload, ancillary, flags, _ = self._sock.recvmsg(
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
            for fd, index in decodeBatch(payload, ancillary):
                adopted += 1
                if not index & LISTENING:
                    adopt(fd, index)
                elif self._adoptListener is not None:
                    self._adoptListener(fd, index & ~LISTENING)
                else:
                    os.close(fd)
        if adopted:
            self._unacknowledged += adopted
            self.flush()
            self._afterAck()

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
        if self._lost or not (self._unacknowledged or self._closed):
            return
        try:
            self._sock.send(encodeAck(self._unacknowledged, self._closed))
        except BlockingIOError:
            # The master is behind on reading: the counts wait, nothing is
            # lost, and they go out together a moment later.
            self._schedule(max(self._closeDelay, 0.01))
            return
        except OSError:
            self._lose()
            return
        self._unacknowledged = self._closed = 0

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
