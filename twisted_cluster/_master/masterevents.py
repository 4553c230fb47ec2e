"""
The app's master-side life-cycle events (L{twisted_cluster.IMasterEvents}),
told by the supervisor and the service.

L{AppMasterEvents} is one more L{IWorkerObserver} of the supervisor: it
turns each worker process into a L{WorkerEvent} and calls the app's hooks,
keeping their mistakes on the app's side (a hook that raises or fails is
logged with C{cluster_event} L{logevents.HOOK_FAILED} and the worker's id;
supervision goes on).
"""

from __future__ import annotations

import signal
from typing import Any, Sequence

from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_cluster import logevents
from twisted_cluster._supervision.causes import ExitCause
from twisted_cluster._supervision.interfaces import WorkerObserver
from twisted_cluster._supervision.process import IWorkerProcess
from twisted_cluster.clusterapp import makeProvider
from twisted_cluster.lifecycle import IMasterEvents, WorkerEvent, callHook

log = Logger()


def _signalName(number: int) -> str:
    try:
        return signal.Signals(number).name[3:]
    except ValueError:
        return str(number)


def workerEvent(
    process: IWorkerProcess,
    cause: ExitCause | None = None,
    reason: Failure | None = None,
) -> WorkerEvent:
    """
    What the app is told of C{process}: its id, pid, and, for a drain or
    an exit, the cause and how it exited.
    """
    value = reason.value if reason is not None else None
    number = getattr(value, "signal", None)
    return WorkerEvent(
        workerId=process.workerId,
        pid=process.pid,
        cause=cause.value if cause is not None else None,
        exitCode=None if number is not None else getattr(value, "exitCode", None),
        signal=_signalName(number) if number is not None else None,
    )


def appMasterEvents(
    masterResponders: Any, masterEvents: Any, master: Any
) -> AppMasterEvents:
    """
    The app's master-side events: its master responders, when they provide
    L{IMasterEvents}, then what C{ClusterApp.masterEvents} stands for
    (built with C{master}, the L{twisted_cluster.IMasterContext}).

    @raise TypeError: when C{masterEvents} is, or makes, no provider.
    """
    providers = [makeProvider(masterEvents, master, IMasterEvents)]
    if IMasterEvents.providedBy(masterResponders):
        providers.insert(0, masterResponders)
    return AppMasterEvents([p for p in providers if p is not None])


class AppMasterEvents(WorkerObserver):
    """
    Calls the app's L{twisted_cluster.IMasterEvents} providers, in order.
    """

    def __init__(self, hooks: Sequence[Any]) -> None:
        self._hooks = list(hooks)
        self._clusterReady = False

    def workerStarted(self, process: IWorkerProcess) -> None:
        self.notify("workerStarted", workerEvent(process))

    def workerReady(self, process: IWorkerProcess) -> None:
        self.notify("workerReady", workerEvent(process))

    def workerDraining(self, process: IWorkerProcess, cause: ExitCause) -> None:
        self.notify("workerDraining", workerEvent(process, cause))

    def workerExited(
        self, process: IWorkerProcess, cause: ExitCause, reason: Failure
    ) -> None:
        self.notify("workerExited", workerEvent(process, cause, reason))

    def clusterStopping(self) -> None:
        """
        The cluster stops gracefully.
        """
        self.notify("clusterStopping")

    def notify(self, hook: str, event: WorkerEvent | None = None) -> None:
        """
        Call C{hook} of every provider (with C{event}, for a worker's);
        after the first C{workerReady}, C{clusterReady} too.
        """
        fields = {} if event is None else {
            "worker_id": event.workerId, "worker_pid": event.pid,
        }
        args = () if event is None else (event,)
        for provider in self._hooks:
            callHook(getattr(provider, hook), *args).addErrback(
                self._failed, hook, fields
            )
        if hook == "workerReady" and not self._clusterReady:
            self._clusterReady = True
            self.notify("clusterReady")

    def _failed(self, failure: Failure, hook: str, fields: dict[str, Any]) -> None:
        log.failure(
            "worker {worker_id} pid {worker_pid}: the app's {hook} hook failed"
            if fields else "the app's {hook} hook failed",
            failure,
            cluster_event=logevents.HOOK_FAILED,
            hook=hook,
            **fields,
        )
