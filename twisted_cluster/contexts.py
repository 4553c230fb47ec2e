"""
What an application's code holds on to in a cluster: a worker's context
(its id, calls to the master and to other workers) and the master's
(calls to one worker or to all of them).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from twisted_cluster._contract import commands
from twisted_cluster.calling import (
    DEFAULT_TIMEOUT,
    callCommand,
    encodeArguments,
    packBox,
    unpackBox,
)
from twisted_cluster.errors import WorkerUnavailable

_log = Logger()


class IWorkerContext(Interface):
    """
    One worker, as its application sees it.  A callable C{--app} (or
    C{ClusterApp.app}) that takes one argument receives it, and so does a
    callable C{ClusterApp.workerResponders}.
    """

    workerId = Attribute("This worker's id (an int, stable across restarts).")
    app = Attribute(
        "The object the app callable returned (a resource or a protocol "
        "factory), so that the worker's responders can act on it."
    )

    def callMaster(
        command: type[amp.Command], /, timeout: float | None = None, **arguments: Any
    ) -> Deferred[Any]:
        """
        Call C{command} on the master; fire with its answer (a dict).
        """

    def callWorker(
        workerId: int,
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[Any]:
        """
        Call C{command} on worker C{workerId}, through the master; fire with
        its answer (a dict).
        """

    def onReopenLogs(callback: Callable[[], object], /) -> None:
        """
        Call C{callback} (no arguments) whenever the master is told to
        reopen its log files (SIGUSR1, as logrotate sends it), so that the
        app reopens the files it writes itself (an access log, say).  The
        worker's own log lines go through the master and need nothing.  An
        exception from C{callback} is logged; the others still run.
        """


class IMasterContext(Interface):
    """
    The master, as the application's master-side responders see it
    (L{twisted_cluster.ClusterService} provides it).
    """

    def workerIds() -> list[int]:
        """
        The ids of the ready workers.
        """

    def callWorker(
        workerId: int,
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[Any]:
        """
        Call C{command} on worker C{workerId}; fire with its answer.
        """

    def broadcast(
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[dict[int, Any]]:
        """
        Call C{command} on every ready worker; fire with a dict from worker
        id to its answer or the L{twisted.python.failure.Failure} of its call.
        """


@implementer(IWorkerContext)
class WorkerContext:
    """
    The context of one worker, over its control connection to the master.

    @ivar workerId: this worker's id.
    @ivar app: the built application, once loaded.
    """

    def __init__(self, workerId: int, connection: amp.AMP, clock: IReactorTime) -> None:
        """
        @param connection: the worker's end of the control channel.
        @param clock: times out calls.
        """
        self.workerId = workerId
        self.app: Any = None
        self._connection = connection
        self._clock = clock
        self._reopenLogs: list[Callable[[], object]] = []

    def onReopenLogs(self, callback: Callable[[], object], /) -> None:
        """
        Call C{callback} whenever the master reopens its log files (see
        L{IWorkerContext.onReopenLogs}).
        """
        self._reopenLogs.append(callback)

    def reopenLogs(self) -> None:
        """
        Run every callable registered with L{onReopenLogs}, each on its own:
        one that raises is logged and the next still runs.  Called by the
        worker runtime when the master says so.
        """
        for callback in list(self._reopenLogs):
            try:
                callback()
            except Exception:
                _log.failure(
                    "worker {worker_id}: the app failed to reopen its logs",
                    worker_id=self.workerId,
                )

    def callMaster(
        self, command: type[amp.Command], /, timeout: float | None = None, **arguments: Any
    ) -> Deferred[Any]:
        """
        Call C{command} on the master.

        @param timeout: seconds to wait (C{None}, the default: as long as
            the master lives; a worker exits when its master is gone).
        @return: a Deferred of the answer (a dict), failing with the
            command's declared errors, L{ValueTooLong},
            L{twisted.internet.defer.TimeoutError} or
            L{amp.UnknownRemoteError}.
        """
        return callCommand(self._connection, command, arguments, self._clock, timeout)

    def callWorker(
        self,
        workerId: int,
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[Any]:
        """
        Call C{command} on worker C{workerId}, relayed by the master
        (L{commands.Relay}).  The target answers it with its worker-side
        responders, as if the master had called it.

        @param timeout: seconds to wait for the answer (C{None}: no limit).
        @return: a Deferred of the answer (a dict), failing like
            L{IMasterContext.callWorker}: the command's declared errors,
            L{NoSuchWorker}, L{WorkerGone},
            L{twisted.internet.defer.TimeoutError}, L{ValueTooLong}.
        """
        try:
            inner = encodeArguments(command, arguments, self._connection)
        except Exception:
            return fail()
        relayed = {
            "worker": workerId,
            "command": command.commandName,
            "box": packBox(inner),
            "timeout": None if timeout is None else float(timeout),
        }
        d = callCommand(
            self._connection,
            commands.Relay,
            relayed,
            self._clock,
            timeout,
            errors=command.reverseErrors,  # type: ignore[attr-defined]
        )
        d.addCallback(
            lambda answer: command.parseResponse(unpackBox(answer["box"]), self._connection)
        )
        return d.addErrback(_naming, workerId)


def _naming(failure: Failure, workerId: int) -> Failure:
    # A relayed NoSuchWorker or WorkerGone crossed as a message only.
    if failure.check(WorkerUnavailable) and failure.value.workerId is None:
        failure.value.workerId = workerId
    return failure
