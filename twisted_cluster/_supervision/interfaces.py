"""
The supervisor as the rest of the master sees it: the workers it keeps
(L{IWorkerPool}), what operators may ask of it (L{IWorkerOperations}), and
what it tells its observers (L{IWorkerObserver}) of each worker's life.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from twisted_cluster._supervision.causes import ExitCause
from twisted_cluster._supervision.process import IWorkerProcess


class IWorkerObserver(Interface):
    """
    What the rest of the master learns from the supervisor, the one owner
    of the worker processes, in the order it happens: started, ready,
    draining, exited (a process that never was ready goes from started to
    exited).  An observer that raises is logged and the others are told
    all the same.
    """

    def workerStarted(process: IWorkerProcess) -> None:
        """
        C{process} was spawned; it is loading the app.
        """

    def workerReady(process: IWorkerProcess) -> None:
        """
        C{process} is ready and holds its slot: it may be given work.
        """

    def workerDraining(process: IWorkerProcess, cause: ExitCause) -> None:
        """
        C{process}, which was ready, was told to stop (C{cause}: why); it
        takes no new connections.
        """

    def workerExited(
        process: IWorkerProcess, cause: ExitCause, reason: Failure
    ) -> None:
        """
        C{process} is gone; C{reason} is its exit (a C{ProcessDone} or
        C{ProcessTerminated} with C{exitCode} and C{signal}).
        """


@implementer(IWorkerObserver)
class WorkerObserver:
    """
    An L{IWorkerObserver} that ignores everything: subclass it to hear of
    what you need.
    """

    def workerStarted(self, process: IWorkerProcess) -> None:
        pass

    def workerReady(self, process: IWorkerProcess) -> None:
        pass

    def workerDraining(self, process: IWorkerProcess, cause: ExitCause) -> None:
        pass

    def workerExited(
        self, process: IWorkerProcess, cause: ExitCause, reason: Failure
    ) -> None:
        pass


class IWorkerPool(Interface):
    """
    The workers as the supervisor keeps them, read by the control plane
    (status, metrics) and the operations (roll-out, health).
    """

    restarts = Attribute("Restarts so far, by cause value (a C{Counter}).")

    def processes() -> list[IWorkerProcess]:
        """
        Every live process: those holding a slot, in slot order, then
        those starting to replace one or retiring.
        """

    def ready() -> list[IWorkerProcess]:
        """
        The processes that are ready, in slot order.
        """

    def slotPids() -> dict[int, int | None]:
        """
        Each slot's worker id and the pid of the process holding it.
        """

    def slotRestarts(workerId: int) -> int:
        """
        How many times slot C{workerId} was restarted.
        """


class IWorkerOperations(Interface):
    """
    What an operator may do to the workers (the control site, C{ctl}):
    each raises L{OperationRefused} with the real reason, logged once.
    """

    def add() -> int:
        """
        Start one worker more; return its id.
        """

    def remove(workerId: int | None = None) -> int:
        """
        Drain worker C{workerId} (by default the highest id) and run one
        worker less; return its id.
        """

    def kill(workerId: int) -> list[int]:
        """
        SIGKILL worker C{workerId} now (its slot restarts); return the pids
        killed.
        """

    def restart(workerId: int) -> Deferred[bool]:
        """
        Replace worker C{workerId} gracefully; fires with whether the
        replacement took over.
        """

    def scale(count: int) -> int:
        """
        Add or remove workers until C{count} are wanted.
        """
