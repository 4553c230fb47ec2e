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
from twisted_cluster._supervision.process import IWorkerProcess
from twisted_cluster._supervision.supervisor import RestartCause, WorkerObserver
from twisted_cluster.lifecycle import WorkerEvent, callHook

log = Logger()


def _signalName(number: int) -> str:
    try:
        return signal.Signals(number).name[3:]
    except ValueError:
        return str(number)


def workerEvent(
    process: IWorkerProcess,
    cause: RestartCause | None = None,
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


class AppMasterEvents(WorkerObserver):
    """
    Calls the app's L{twisted_cluster.IMasterEvents} providers, in order.
    """

    def __init__(self, hooks: Sequence[Any]) -> None:
        self._hooks = list(hooks)
        self._clusterReady = False

    def workerStarted(self, process: IWorkerProcess) -> None:
        self._call("workerStarted", process, workerEvent(process))

    def workerReady(self, process: IWorkerProcess) -> None:
        """
        Tell the app that C{process} is ready, then, the first time, that
        the cluster is.
        """
        self._call("workerReady", process, workerEvent(process))
        if not self._clusterReady:
            self._clusterReady = True
            self._call("clusterReady", None)

    def workerDraining(self, process: IWorkerProcess, cause: RestartCause) -> None:
        self._call("workerDraining", process, workerEvent(process, cause))

    def workerExited(
        self, process: IWorkerProcess, cause: RestartCause, reason: Failure
    ) -> None:
        self._call("workerExited", process, workerEvent(process, cause, reason))

    def clusterStopping(self) -> None:
        """
        The cluster stops gracefully.
        """
        self._call("clusterStopping", None)

    def _call(self, hook: str, process: IWorkerProcess | None, *args: Any) -> None:
        fields = {} if process is None else {
            "worker_id": process.workerId, "worker_pid": process.pid,
        }
        for provider in self._hooks:
            callHook(getattr(provider, hook), *args).addErrback(
                self._failed, hook, fields
            )

    def _failed(self, failure: Failure, hook: str, fields: dict[str, Any]) -> None:
        log.failure(
            "worker {worker_id} pid {worker_pid}: the app's {hook} hook failed"
            if fields else "the app's {hook} hook failed",
            failure,
            cluster_event=logevents.HOOK_FAILED,
            hook=hook,
            **fields,
        )
