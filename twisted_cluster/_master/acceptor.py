"""
The master's accept loop: a bare listening socket, accepted in batches.

The master never builds a Protocol or a transport for a client connection:
it accepts the raw descriptor and passes it on, so its cost per connection
is one C{accept} and a share of one C{sendmsg}.

Batching never adds latency: each turn of the reactor accepts what is
waiting in the backlog now (up to C{batch}) and hands it off at once.  A
lone connection travels alone, at once; connections that arrived together
travel together, in one hand-off message per worker.  (An earlier version
stopped watching the socket for 2 ms after each batch so that more would
gather: under a steady stream every connection waited for it, and the
cluster served 8 closed-loop clients 4x slower than one process.)
"""

from __future__ import annotations

import errno
import socket
from typing import Callable

from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorFDSet,
    IReactorTime,
    IReadDescriptor,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_cluster import logevents
from twisted_cluster._shared.exhaustion import EXHAUSTED
from twisted_cluster._shared.ratelimit import RateLimiter

#: Errors about one connection that the client gave up on: skip it.
_ONE_CONNECTION = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR}

#: An accepted connection before dispatch: (file descriptor, peer address).
Accepted = tuple[int, object]


@implementer(IReadDescriptor)
class Acceptor:
    """
    Accepts connections on one listening socket and gives them, a batch at a
    time, to C{sink}.

    @ivar paused: whether the acceptor is off the reactor (no worker ready,
        descriptors exhausted, or stopped).  Connections that arrive while
        it is paused wait in the kernel's backlog: none is refused.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorFDSet,
        clock: IReactorTime,
        sock: socket.socket,
        sink: Callable[[list[Accepted]], None],
        batch: int = 128,
        exhaustedPause: float = 0.1,
        warnEvery: float = 10.0,
    ) -> None:
        """
        @param sock: a listening, non-blocking socket.
        @param sink: receives each non-empty batch of accepted connections.
        @param batch: most connections accepted per turn of the reactor, so
            that one busy listener cannot starve the rest of the master.
        @param exhaustedPause: seconds the acceptor stops accepting when
            the process is out of descriptors or memory (accepting again at
            once would spin on the same error).
        @param warnEvery: seconds between two warnings about exhaustion: the
            first one is logged at once, the ones after it are counted and
            summed up at most this often, so that a master out of
            descriptors does not also flood its log.
        """
        self._reactor = reactor
        self._clock = clock
        self._sock = sock
        # socket._accept returns the raw (fd, address) pair without building
        # a socket object per connection: the master only passes fds on.
        self._accept = sock._accept  # type: ignore[attr-defined]
        self._sink = sink
        self._batch = batch
        self._exhaustedPause = exhaustedPause
        self._resumeCall: IDelayedCall | None = None
        self._warnings = RateLimiter(clock, warnEvery)
        self.paused = True
        self.exhaustedCount = 0
        self.accepted = 0

    def resume(self) -> None:
        """
        Start (or go on) accepting.
        """
        if self.paused and self._resumeCall is None:
            self.paused = False
            self._reactor.addReader(self)

    def pause(self) -> None:
        """
        Stop accepting; new connections wait in the kernel's backlog.
        """
        if self._resumeCall is not None:
            self._resumeCall.cancel()
            self._resumeCall = None
        if not self.paused:
            self.paused = True
            self._reactor.removeReader(self)

    def fileno(self) -> int:
        return self._sock.fileno()

    def logPrefix(self) -> str:
        return "Acceptor"

    def doRead(self) -> None:
        """
        Accept what is waiting, up to C{batch} connections, and hand it to
        the sink at once.
        """
        accepted: list[Accepted] = []
        accept = self._accept
        for _ in range(self._batch):
            try:
                accepted.append(accept())
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in _ONE_CONNECTION:
                    continue
                if e.errno in EXHAUSTED:
                    self._exhausted(e)
                    break
                raise
        if accepted:
            self.accepted += len(accepted)
            self._sink(accepted)

    def acceptAll(self, limit: int = 65536) -> None:
        """
        Accept everything waiting in the backlog now (up to C{limit}), for
        a listener that is about to close.
        """
        for _ in range(0, limit, self._batch):
            before = self.accepted
            self.doRead()
            if self.accepted - before < self._batch:
                return

    def _exhausted(self, error: OSError) -> None:
        self.exhaustedCount += 1
        repeated = self._warnings.allow()
        if repeated is not None:
            self.log.warn(
                "cannot accept connections ({error}); pausing {pause}s "
                "({repeated} more times since the last warning)",
                cluster_event=logevents.ACCEPT_FAILING,
                error=error.strerror,
                errno=error.errno,
                pause=self._exhaustedPause,
                repeated=repeated,
                exhausted=self.exhaustedCount,
            )
        self._pauseFor(self._exhaustedPause)

    def _pauseFor(self, seconds: float) -> None:
        self.pause()
        self._resumeCall = self._clock.callLater(seconds, self._resumed)

    def _resumed(self) -> None:
        self._resumeCall = None
        self.resume()

    def connectionLost(self, reason: Failure) -> None:
        self.pause()
