"""
The new master's half of an upgrade (SIGUSR2): adopt what the old master
handed over (L{twisted_cluster._master.handover}), tell it when this one is
ready or why it gives up, and take the control socket once it is gone.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable

from twisted.internet.error import ConnectionDone
from twisted.internet.fdesc import setNonBlocking
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_cluster import logevents
from twisted_cluster._master.handover import (
    FAILED,
    MAX_REPORT,
    PREDECESSOR_FD,
    READY,
    STATUS_FD,
    Handover,
)

log = Logger()


@implementer(IReadDescriptor)
class _EndWatcher:
    """
    Calls C{onEnd} once the pipe C{fd} reaches its end (its writer exited).
    """

    def __init__(self, fd: int, onEnd: Callable[[], None]) -> None:
        self._fd = fd
        self._onEnd = onEnd

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> Any:
        try:
            data = os.read(self._fd, 512)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        # The old master writes nothing: any data is ignored, the end counts.
        return None if data else ConnectionDone("the old master is gone")

    def connectionLost(self, reason: Failure) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._onEnd()

    def logPrefix(self) -> str:
        return "upgrade"


class Successor:
    """
    The new master's half of an upgrade: adopts what it inherited, reports
    to the old master, and serves the control socket once that one is gone.

    @ivar parent: the old master's pid.
    """

    def __init__(
        self,
        reactor: IReactorFDSet,
        handover: Handover,
        statusFD: int = STATUS_FD,
        predecessorFD: int = PREDECESSOR_FD,
    ) -> None:
        self._reactor = reactor
        self._handover = handover
        self._statusFD: int | None = statusFD
        self._predecessorFD = predecessorFD
        self.parent = handover.parent
        #: The scheduling policy the old master's workers set back.
        self.workerPolicy = handover.workerPolicy
        self._gone = False
        for fd in [statusFD, predecessorFD, *(fd for _, fd in handover.listeners)]:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)
        if handover.control is not None:
            with contextlib.suppress(OSError):
                os.set_inheritable(handover.control, False)

    @property
    def takingOver(self) -> bool:
        """
        Whether the old master still runs (it drains its workers).
        """
        return not self._gone

    def prepare(self, service: Any) -> None:
        """
        Make C{service} adopt the inherited sockets instead of binding.
        """
        service.inherited = self._handover.inherited()
        service.inheritedControl = self._handover.control

    def start(self, service: Any) -> None:
        """
        Once the reactor runs: report C{ready} when all of C{service}'s
        workers are, and serve the control socket when the old master is
        gone.
        """
        try:
            setNonBlocking(self._predecessorFD)
        except OSError:
            # No pipe there: nothing to wait for.
            self._ended(service)
        else:
            self._reactor.addReader(
                _EndWatcher(self._predecessorFD, lambda: self._ended(service))
            )
        d = service.whenReady(service.config.workers)
        d.addCallbacks(lambda _: self.report(READY), lambda f: None)

    def report(self, line: bytes) -> None:
        """
        Write one report line to the old master (once; later ones are
        dropped).  A gone old master is no error.
        """
        fd, self._statusFD = self._statusFD, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(fd, line[:MAX_REPORT - 1] + b"\n")
        with contextlib.suppress(OSError):
            os.close(fd)

    def reportFailure(self, reason: str) -> None:
        """
        Tell the old master this one gives up, and why (one line).
        """
        self.report(FAILED + b" " + " ".join(reason.split()).encode("utf-8", "replace"))

    def _ended(self, service: Any) -> None:
        self._gone = True
        log.info(
            "master upgrade: the old master pid {old_master_pid} is gone; this "
            "master pid {master_pid} runs the cluster",
            cluster_event=logevents.UPGRADE_DONE,
            old_master_pid=self.parent, master_pid=os.getpid(),
        )
        try:
            service.listenInheritedControl()
        except Exception as e:
            log.error("cannot serve the inherited control socket: {error}",
                      cluster_event=logevents.CONTROL_INHERIT_FAILED, error=str(e))
