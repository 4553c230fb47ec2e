"""
The master's end of a worker's hand-off channel: it sends the connections,
reads the acknowledgements, notices a stall and takes back what the worker
never received.  The wire format and the reasoning behind it are in
L{twisted_cluster._contract.handoff}.
"""

from __future__ import annotations

import errno
import os
import socket
from collections import deque
from typing import Callable, Iterable

from twisted.internet.interfaces import IDelayedCall, IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_cluster._contract.handoff import (
    ACK,
    ANCILLARY_SPACE,
    LISTENING,
    MAX_BATCH,
    Connection,
    HandoffReactor,
    decodeAck,
    decodeBatch,
    encodeBatch,
    socketIdentity,
)


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
            if len(message) < ACK.size:
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
                    MAX_BATCH, ANCILLARY_SPACE,
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
                firsts.append((socketIdentity(received[0][0]), len(payload)))
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
            length = wanted.pop(socketIdentity(inFlight[i][0]), 0) if wanted else 0
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
