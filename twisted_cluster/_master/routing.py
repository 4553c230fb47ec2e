"""
The master's side of application calls: one worker by id, every worker at
once, and calls that one worker relays to another.

L{WorkerCalls} works on two mappings from worker id to control connection,
the ready workers' and the draining ones', so that the master service and
the in-process fakes of L{twisted_cluster.testing} run the very same code.
A draining worker is still a member of the cluster for messaging: its
clients are still connected until it exits.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.error import ConnectionClosed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_cluster import logevents
from twisted_cluster._contract import commands
from twisted_cluster.calling import (
    DEFAULT_TIMEOUT,
    callCommand,
    checkCommand,
    packBox,
    sendBox,
    withTimeout,
)
from twisted_cluster.contexts import BroadcastAnswers, IMasterContext
from twisted_cluster.errors import NoSuchWorker, WorkerGone

log = Logger()


@implementer(IMasterContext)
class WorkerCalls:
    """
    Calls from the master to its workers.

    @ivar clock: times out calls.
    @ivar connections: returns the control connection of every ready
        worker, by worker id.
    @ivar drainingConnections: returns the control connection of every
        worker that drains and is still alive, by worker id.
    """

    def __init__(
        self,
        clock: IReactorTime,
        connections: Callable[[], Mapping[int, amp.AMP]],
        drainingConnections: Callable[[], Mapping[int, amp.AMP]] = dict,
    ) -> None:
        self.clock = clock
        self.connections = connections
        self.drainingConnections = drainingConnections

    def workerIds(self, draining: bool = False) -> list[int]:
        """
        The ids of the workers that are ready now, in order; with
        C{draining}, of those that drain and are still alive too.
        """
        ids = set(self.connections())
        if draining:
            ids.update(self.drainingConnections())
        return sorted(ids)

    def _connection(self, workerId: int) -> amp.AMP:
        connections = self.connections()
        connection = connections.get(workerId)
        if connection is None:
            connection = self.drainingConnections().get(workerId)
        if connection is None:
            raise NoSuchWorker(
                f"no live worker {workerId} (ready: "
                f"{', '.join(map(str, sorted(connections))) or 'none'})",
                workerId,
            )
        return connection

    def callWorker(
        self,
        workerId: int,
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[Any]:
        """
        Call C{command} on worker C{workerId}: the ready one with that id,
        else one that drains (a worker removed, or retiring while no
        replacement took its id).

        @param timeout: seconds to wait for the answer (C{None}: no limit).
        @return: a Deferred of the answer (a dict; C{None} at once for a
            command that C{requiresAnswer = False}), failing with the
            command's declared errors, L{NoSuchWorker}, L{WorkerGone},
            L{twisted_cluster.CallTimedOut}, L{ValueTooLong} or
            L{amp.UnknownRemoteError} (the responder raised something it did
            not declare).
        @raise TypeError: at once, when C{command} is no L{amp.Command}
            subclass or declares an argument named C{timeout}.
        """
        checkCommand(command, "callWorker")
        try:
            connection = self._connection(workerId)
        except NoSuchWorker:
            return fail()
        return self._call(connection, workerId, command, timeout, arguments)

    def _call(
        self,
        connection: amp.AMP,
        workerId: int,
        command: type[amp.Command],
        timeout: float | None,
        arguments: dict[str, Any],
    ) -> Deferred[Any]:
        d = callCommand(
            connection, command, arguments, self.clock, timeout,
            what=f"{command.__name__} to worker {workerId}",
        )
        return d.addErrback(_gone, workerId, command.__name__)

    def broadcast(
        self,
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[BroadcastAnswers]:
        """
        Call C{command} on every live worker at once: the ready ones and
        those that drain (their clients are still connected).

        @param timeout: seconds to wait for each answer: a slow or dead
            worker costs at most this long and does not hold up the others.
        @return: a Deferred that fires, once every worker answered, failed or
            timed out, with the L{BroadcastAnswers}: by worker id, the
            answer (a dict) or the L{Failure} of that worker's call.  It
            never fails itself.
        @raise TypeError: at once, like L{callWorker}.
        """
        checkCommand(command, "broadcast")
        targets = [
            (False, i, c) for i, c in sorted(self.connections().items())
        ] + [(True, i, c) for i, c in sorted(self.drainingConnections().items())]
        calls = [self._call(c, i, command, timeout, arguments) for _, i, c in targets]

        def answers(results: list[tuple[bool, Any]]) -> BroadcastAnswers:
            ready: dict[int, Any] = {}
            draining: dict[int, Any] = {}
            for (isDraining, i, _), (_, result) in zip(targets, results):
                (draining if isDraining else ready)[i] = result
            return BroadcastAnswers(ready, draining)

        return DeferredList(calls, consumeErrors=True).addCallback(answers)

    def relay(
        self, workerId: int, name: bytes, box: amp.AmpBox, timeout: float | None
    ) -> Deferred[amp.AmpBox]:
        """
        Deliver an already encoded command to worker C{workerId}; fire with
        its raw answer box.  An error answer passes on with its own code.
        """
        try:
            connection = self._connection(workerId)
        except NoSuchWorker:
            return fail()
        sent = sendBox(connection, name, box)
        assert sent is not None
        sent.addErrback(_unhandledPassesOn)
        what = name.decode("ascii", "replace")
        d = withTimeout(sent, self.clock, timeout, f"{what} to worker {workerId}")
        return d.addErrback(_gone, workerId, what)


@implementer(IMasterContext)
class ForwardingMasterContext:
    """
    L{IMasterContext} for an object that reaches its workers through
    another one (a L{WorkerCalls}, a L{twisted_cluster.ClusterService}):
    every call goes to L{_masterContext}, so that the master service and
    the testing helpers answer application calls with the same code.
    Subclasses set C{clock} (L{IMasterContext.clock}).
    """

    clock: IReactorTime

    def _masterContext(self) -> IMasterContext:
        """
        The context that does the work; subclasses say which.
        """
        raise NotImplementedError()

    def workerIds(self, draining: bool = False) -> list[int]:
        """
        The ids of the ready workers, in order; with C{draining}, of every
        live worker (L{WorkerCalls.workerIds}).
        """
        return self._masterContext().workerIds(draining)

    def callWorker(
        self,
        workerId: int,
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[Any]:
        """
        Call the app's C{command} on worker C{workerId}
        (L{WorkerCalls.callWorker}).
        """
        return self._masterContext().callWorker(workerId, command, timeout, **arguments)

    def broadcast(
        self,
        command: type[amp.Command],
        /,
        timeout: float | None = DEFAULT_TIMEOUT,
        **arguments: Any,
    ) -> Deferred[BroadcastAnswers]:
        """
        Call the app's C{command} on every live worker; fire with each
        one's answer or failure (L{WorkerCalls.broadcast}).
        """
        return self._masterContext().broadcast(command, timeout, **arguments)


def _gone(failure: Failure, workerId: int, what: str) -> Failure:
    if failure.check(ConnectionClosed):
        return Failure(
            WorkerGone(
                f"worker {workerId} went away before answering {what}", workerId
            )
        )
    return failure


def _unhandledPassesOn(failure: Failure) -> Failure:
    # AMP turns the error code UNHANDLED into a local UnhandledCommand; pass
    # the code on so that the relaying worker sees UnhandledCommand as well.
    if failure.check(amp.UnhandledCommand):
        description = failure.value.args[-1] if failure.value.args else ""
        return Failure(amp.RemoteAmpError(amp.UNHANDLED_ERROR_CODE, str(description)))
    return failure


def _builtinNames() -> frozenset[bytes]:
    return frozenset(
        kind.commandName
        for kind in vars(commands).values()
        if isinstance(kind, type) and issubclass(kind, amp.Command)
    )


class RelayLocator(amp.CommandLocator):
    """
    The master's responder to L{commands.Relay}.

    It relays the application's commands only: a worker cannot make another
    drain or answer a health check through it.
    """

    def __init__(self, calls: WorkerCalls) -> None:
        self._calls = calls
        self._builtin = _builtinNames()

    @commands.Relay.responder
    def relay(
        self, worker: int, command: bytes, box: bytes, timeout: float | None
    ) -> Deferred[dict[str, bytes]]:
        """
        Deliver the encoded C{command} to worker C{worker} and answer with
        its answer box, encoded; refuse the cluster's own commands.
        """
        if command in self._builtin:
            return fail(
                amp.RemoteAmpError(
                    amp.UNHANDLED_ERROR_CODE,
                    f"the cluster's own command {command.decode()} is not relayed",
                )
            )
        try:
            arguments = relayableBox(box)
        except ValueError as e:
            log.warn(
                "refused to relay {command} to worker {target_worker}: {reason}",
                cluster_event=logevents.RELAY_REFUSED,
                command=command.decode("ascii", "replace")[:100],
                target_worker=worker,
                reason=str(e),
            )
            return fail(amp.RemoteAmpError(BAD_RELAY, str(e)))
        d = self._calls.relay(worker, command, arguments, timeout)
        return d.addCallback(lambda answer: {"box": packBox(answer)})


#: The error code of a relayed box that L{relayableBox} refuses.
BAD_RELAY = b"BAD_RELAY"


def relayableBox(data: bytes) -> amp.AmpBox:
    """
    The arguments box a worker asked the master to relay, from its bytes.

    AMP reserves the keys that begin with an underscore (C{_ask},
    C{_answer}, C{_error}, ...) for itself: the master adds C{_command} and
    C{_ask} as it sends, and a box that came with C{_answer} or C{_error}
    would be read by the target as the answer to a question it never asked,
    which closes its channel.  So the calling worker's box may hold only its
    command's arguments.

    @raise ValueError: when C{data} is not one whole box, or holds a
        reserved key.
    """
    try:
        boxes = amp.parseString(data)
    except Exception as e:
        # A key or value too long, or bytes AMP cannot read at all.
        raise ValueError(f"the box does not parse ({type(e).__name__})") from None
    if len(boxes) != 1:
        raise ValueError(f"{len(boxes)} boxes where one was expected")
    [box] = boxes
    reserved = sorted(key for key in box if key.startswith(b"_"))
    if reserved:
        names = ", ".join(key.decode("ascii", "replace") for key in reserved[:5])
        raise ValueError(f"the box holds keys reserved for AMP: {names}")
    return box
