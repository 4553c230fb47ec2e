"""
The worker's end of its hand-off channel: it receives the connections,
adopts them and acknowledges them, coalesced.  The wire format is in
L{twisted_cluster._contract.handoff}.
"""

from __future__ import annotations

import os
import socket
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_cluster._contract.handoff import (
    ANCILLARY_SPACE,
    LISTENING,
    MAX_BATCH,
    HandoffReactor,
    decodeBatch,
    encodeAck,
)


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
                    MAX_BATCH, ANCILLARY_SPACE, socket.MSG_CMSG_CLOEXEC
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
