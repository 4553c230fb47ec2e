"""
What an application's code holds on to in a cluster: a worker's context
(its id, calls to the master and to other workers) and the master's
(calls to one worker or to all of them).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionClosed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from twisted_cluster import logevents
from twisted_cluster._contract import commands
from twisted_cluster.calling import (
    DEFAULT_TIMEOUT,
    callCommand,
    checkCommand,
    encodeArguments,
    packBox,
    unpackBox,
)
from twisted_cluster.errors import WorkerGone, WorkerUnavailable


class BroadcastAnswers(dict[int, Any]):
    """
    What L{IMasterContext.broadcast} fires with: a dict from the id of each
    ready worker to its answer (a dict; C{None} for a command that
    C{requiresAnswer = False}) or the L{Failure} of its call.

    @ivar draining: the same, for the workers that are draining but still
        alive.  During a roll-out the old and the new process of a slot
        share its id: the new one answers in the dict, the old one here.
    """

    def __init__(self, ready: dict[int, Any], draining: dict[int, Any]) -> None:
        super().__init__(ready)
        self.draining = draining

    def everyAnswer(self) -> list[Any]:
        """
        Every answer or failure, the ready workers' first (in id order),
        then the draining ones': one per live worker process.
        """
        return [self[i] for i in sorted(self)] + [
            self.draining[i] for i in sorted(self.draining)
        ]

_log = Logger()


class IWorkerContext(Interface):
    """
    One worker, as its application sees it.  A callable C{--app} (or
    C{ClusterApp.app}) that takes one argument receives it, and so does a
    callable C{ClusterApp.workerResponders}.
    """

    workerId = Attribute("This worker's id (an int, stable across restarts).")
    clock = Attribute(
        "The worker's clock (an IReactorTime: the reactor; a FakeCluster's "
        "Clock in tests), for rate limits and time-outs the app keeps."
    )
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

    A worker is I{ready} from its C{Ready} (its app loaded and its
    C{workerStarted} hooks done) until it begins to drain: it is then
    given connections.  It is I{alive} until its process exits: a
    draining worker no longer gets connections, but it still serves those
    it has, and it still receives C{broadcast} and C{callWorker}.
    """

    clock = Attribute(
        "The master's clock (an IReactorTime: the reactor; a FakeCluster's "
        "Clock in tests)."
    )

    def workerIds(draining: bool = False) -> list[int]:
        """
        The ids of the ready workers, in order; with C{draining}, of every
        live worker (the draining ones too).
        """

    def callWorker(
        workerId: int,
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[Any]:
        """
        Call C{command} on worker C{workerId} (the ready one with that id,
        else a draining one); fire with its answer.
        """

    def broadcast(
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[BroadcastAnswers]:
        """
        Call C{command} on every live worker, ready or draining; fire with
        their L{BroadcastAnswers}.
        """


class WorkerContextProtocol(Protocol):
    """
    L{IWorkerContext} for plain mypy (no mypy-zope plugin): annotate your
    app's context with it, and C{context.callMaster(Publish, room=...)}
    type-checks.
    """

    @property
    def workerId(self) -> int: ...

    @property
    def clock(self) -> IReactorTime: ...

    app: Any

    def callMaster(
        self, command: type[amp.Command], /, timeout: float | None = None, **arguments: Any
    ) -> Deferred[Any]: ...

    def callWorker(
        self,
        workerId: int,
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[Any]: ...


class MasterContextProtocol(Protocol):
    """
    L{IMasterContext} for plain mypy (no mypy-zope plugin): annotate your
    master-side code's context with it.
    """

    @property
    def clock(self) -> IReactorTime: ...

    def workerIds(self, draining: bool = False) -> list[int]: ...

    def callWorker(
        self,
        workerId: int,
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[Any]: ...

    def broadcast(
        self,
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[BroadcastAnswers]: ...


@implementer(IWorkerContext)
class WorkerContext:
    """
    The context of one worker, over its control connection to the master.

    @ivar workerId: this worker's id.
    @ivar clock: the reactor's time (what times out calls, too).
    @ivar app: the built application, once loaded.
    """

    def __init__(self, workerId: int, connection: amp.AMP, clock: IReactorTime) -> None:
        """
        @param connection: the worker's end of the control channel.
        @param clock: times out calls.
        """
        self.workerId = workerId
        self.clock = clock
        self.app: Any = None
        self._connection = connection
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
                    cluster_event=logevents.LOG_REOPEN_APP_FAILED,
                    worker_id=self.workerId,
                )

    def callMaster(
        self, command: type[amp.Command], /, timeout: float | None = None, **arguments: Any
    ) -> Deferred[Any]:
        """
        Call C{command} on the master.

        @param timeout: seconds to wait (C{None}, the default: as long as
            the master lives; a worker exits when its master is gone).
        @return: a Deferred of the answer (a dict; C{None} at once for a
            command that C{requiresAnswer = False}), failing with the
            command's declared errors, L{ValueTooLong},
            L{twisted_cluster.CallTimedOut} or L{amp.UnknownRemoteError}.
        @raise TypeError: at once, when C{command} is no L{amp.Command}
            subclass or declares an argument named C{timeout}.
        """
        checkCommand(command, "callMaster")
        d = callCommand(
            self._connection, command, arguments, self.clock, timeout,
            what=f"{command.__name__} to the master",
        )
        return d.addErrback(self._channelClosed, command)

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
            L{NoSuchWorker}, L{WorkerGone}, L{twisted_cluster.CallTimedOut},
            L{ValueTooLong}.
        @raise TypeError: at once, like L{callMaster}.
        """
        checkCommand(command, "callWorker")
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
            self.clock,
            timeout,
            errors=command.reverseErrors,  # type: ignore[attr-defined]
            what=f"{command.__name__} to worker {workerId}",
        )
        d.addCallback(
            lambda answer: command.parseResponse(unpackBox(answer["box"]), self._connection)
        )
        d.addErrback(self._channelClosed, command)
        return d.addErrback(_naming, workerId)

    def _channelClosed(self, failure: Failure, command: type[amp.Command]) -> Failure:
        """
        A call of a worker whose control channel closed (it is leaving:
        killed, or its master is gone) fails with L{WorkerGone}, naming
        this worker, in a real cluster and in L{twisted_cluster.testing}.
        """
        if failure.check(ConnectionClosed):
            return Failure(
                WorkerGone(
                    f"worker {self.workerId} is no longer in the cluster (its "
                    f"control channel closed): {command.__name__} was not answered",
                    self.workerId,
                )
            )
        return failure


def _naming(failure: Failure, workerId: int) -> Failure:
    # A relayed NoSuchWorker or WorkerGone crossed as a message only.
    if failure.check(WorkerUnavailable) and failure.value.workerId is None:
        failure.value.workerId = workerId
    return failure
