"""
One worker process as the master sees it: spawning it with its channels,
reading its output, signalling it.

L{WorkerProcess} knows how to start and talk to one process; the decisions
(when to restart, when to kill) belong to L{twisted_cluster._supervision.supervisor}.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
from typing import Any, Callable

from constantly import NamedConstant, Names, ValueConstant, Values
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorProcess,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import ILogObserver, Logger, globalLogPublisher
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

import twisted_cluster
from twisted_cluster import logevents
from twisted_cluster._contract import (
    CONTROL_FD,
    HANDOFF_FD,
    LOG_FD,
    STACKS_FD,
    STACKS_SIGNAL,
    commands,
)
from twisted_cluster._contract.amp import ChannelFactory, ControlAMP
from twisted_cluster._contract.handoff import Connection, HandoffReactor, socketpair
from twisted_cluster._contract.metricsnapshot import MAX_BYTES as MAX_SNAPSHOT_BYTES
from twisted_cluster._contract.workerconfig import WorkerConfig
from twisted_cluster._shared.endpointstrings import EndpointReactor
from twisted_cluster._shared.workerlog import (
    EVENT_LIMIT,
    LINE_LIMIT,
    BadEvent,
    LineBuffer,
    escapeControls,
    eventFromWorker,
)
from twisted_cluster._supervision.handoffsender import HandoffSender


class WorkerState(Values):
    """
    The states a worker goes through, in order; each one's value is its
    name in C{/status.json} and in the metrics.
    """

    STARTING = ValueConstant("starting")
    READY = ValueConstant("ready")
    DRAINING = ValueConstant("draining")
    STOPPED = ValueConstant("stopped")


STARTING, READY, DRAINING, STOPPED = (
    WorkerState.STARTING, WorkerState.READY, WorkerState.DRAINING, WorkerState.STOPPED
)


class StopMode(Names):
    """
    How the master ends a worker process (L{WorkerProcess.stop}).
    """

    #: Ask it to finish its connections and exit (the Drain command).
    DRAIN = NamedConstant()
    #: SIGTERM: for a process that cannot drain (starting).
    TERMINATE = NamedConstant()
    #: SIGKILL now.
    KILL = NamedConstant()
    #: Ask for its Python stacks (L{STACKS_SIGNAL}), log them, then SIGKILL:
    #: for a hung process, whose reactor cannot act on a SIGTERM.
    ABORT = NamedConstant()


DRAIN, TERMINATE, KILL, ABORT = (
    StopMode.DRAIN, StopMode.TERMINATE, StopMode.KILL, StopMode.ABORT
)

#: Most bytes of stacks kept from one worker: the worker is untrusted, and
#: a few hundred threads' stacks fit.
STACKS_LIMIT = 256 * 1024
#: Seconds a hung worker has to write its stacks before its SIGKILL.
STACKS_WAIT = 0.5
#: Seconds without more stack output after which the dump is taken as
#: complete and the process killed (C{faulthandler} writes it at once).
STACKS_QUIET = 0.05

log = Logger()


def workerEnvironment(pythonPath: tuple[str, ...] = ()) -> dict[str, str]:
    """
    The master's environment for a worker (C{spawnProcess} passes an empty
    one otherwise), with this very copy of C{twisted_cluster} first on
    C{PYTHONPATH}: a worker runs the same code as its master.
    """
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(twisted_cluster.__file__)))
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    first = [here] + [p for p in pythonPath if p != here]
    env["PYTHONPATH"] = os.pathsep.join(first + [p for p in paths if p not in first])
    return env


class SpawnFailed(Exception):
    """
    A worker process could not be started; C{str()} says why, in one line
    (C{"EAGAIN: Resource temporarily unavailable"}).
    """


def _describeOSError(error: OSError) -> str:
    name = errno.errorcode.get(error.errno or 0, "")
    return f"{name}: {error.strerror}" if name else str(error)


class _WorkerOutput(ProcessProtocol):
    """
    Turns a worker's stdout and stderr lines, and its JSON log events, into
    events of the master's log, marked with the worker's id and pid.

    The worker is untrusted: every stream is read through a
    L{LineBuffer} (a line is at most L{LINE_LIMIT} bytes, an event
    L{EVENT_LIMIT}), and every event through L{eventFromWorker}.  A line
    that is no event is dropped and counted, and the next one is read.

    @ivar dropped: how many lines of the log pipe were not forwarded.
    """

    def __init__(
        self, worker: "WorkerProcess", publisher: ILogObserver = globalLogPublisher
    ) -> None:
        """
        @param publisher: where the worker's events go.
        """
        self._worker = worker
        self._publisher = publisher
        self._loggers: dict[int, Logger] = {}
        self.dropped = 0
        self._streams = {
            1: LineBuffer(LINE_LIMIT, lambda line, cut: self._printed(1, line, cut)),
            2: LineBuffer(LINE_LIMIT, lambda line, cut: self._printed(2, line, cut)),
            LOG_FD: LineBuffer(EVENT_LIMIT, self._event),
        }

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        stream = self._streams.get(childFD)
        if stream is not None:
            stream.feed(data)
        elif childFD == STACKS_FD:
            self._worker._stacksReceived(data)

    def childConnectionLost(self, childFD: int) -> None:
        stream = self._streams.get(childFD)
        if stream is not None:
            stream.close()

    def _logger(self, childFD: int) -> Logger:
        # Logger.emit sets log_namespace to the logger's own: the worker's
        # name must be the logger's namespace to reach text logs.
        logger = self._loggers.get(childFD)
        if logger is None:
            stream = {1: "stdout", 2: "stderr"}.get(childFD, "log")
            logger = Logger(f"{self._worker.name} {stream}", observer=self._publisher)
            self._loggers[childFD] = logger
        return logger

    def _printed(self, childFD: int, line: bytes, cut: bool) -> None:
        worker = self._worker
        text = escapeControls(line.decode("utf-8", "replace").rstrip("\r"))
        emit = self._logger(childFD).info if childFD == 1 else self._logger(childFD).warn
        emit(
            "{line} [cut at {limit} bytes]" if cut else "{line}",
            line=text,
            truncated=cut,
            limit=LINE_LIMIT,
            **workerFields(worker),
        )

    def _event(self, line: bytes, cut: bool) -> None:
        worker = self._worker
        try:
            if cut:
                raise BadEvent(f"longer than {EVENT_LIMIT} bytes")
            event = eventFromWorker(line)
        except BadEvent as e:
            self.dropped += 1
            self._logger(LOG_FD).warn(
                "dropped a log event of worker {worker_id} pid {worker_pid}: "
                "{reason} ({dropped} dropped so far)",
                reason=str(e),
                dropped=self.dropped,
                **workerFields(worker),
            )
            return
        event["log_namespace"] = f"{worker.name} {event.get('log_namespace', '')}"
        event["worker_id"] = worker.workerId
        event["worker_pid"] = worker.pid
        self._publisher(event)

    def processExited(self, reason: Failure) -> None:
        # Twisted ends the process once every pipe is closed: read the
        # stacks pipe again so that its end of file is seen.
        self._worker._stacksReader("startReading")

    def processEnded(self, reason: Failure) -> None:
        self._worker._ended(reason)


class MasterControl(ControlAMP):
    """
    The master's end of one worker's control channel.
    """

    def __init__(self, worker: "WorkerProcess", appLocator: Any = None) -> None:
        super().__init__(appLocator)
        self._worker = worker

    def logFields(self) -> dict[str, Any]:
        return workerFields(self._worker)

    @commands.Ready.responder
    def ready(self, pid: int) -> dict[str, Any]:
        self._worker._readyReceived()
        return {}

    @commands.StartupFailed.responder
    def startupFailed(self, error: str, details: str) -> dict[str, Any]:
        self._worker._startupFailed(error, details)
        return {}

    @commands.FinalMetrics.responder
    def finalMetrics(self, snapshot: bytes) -> dict[str, Any]:
        # Kept for the control site, which reads it once the process is
        # gone; a worker may not make the master hold more than a snapshot.
        if len(snapshot) <= MAX_SNAPSHOT_BYTES:
            self._worker.finalMetrics = snapshot
        return {}

    @commands.ListWorkers.responder
    def listWorkers(self) -> dict[str, Any]:
        return {"workers": json.dumps(self._worker._listWorkers())}



class IHandoffObserver(Interface):
    """
    What a worker process reports about its hand-off channel: the master's
    dispatch path (L{twisted_cluster._master.dispatcher.Dispatcher}) acts on it.
    """

    def workerAck(
        process: IWorkerProcess, taken: int, closed: int, returned: list[Connection]
    ) -> None:
        """
        C{process} acknowledged: connections taken, connections closed, and
        those it returned (no descriptor left for them; see L{HandoffSender}).
        """

    def workerLost(process: IWorkerProcess, connections: list[Connection]) -> None:
        """
        The hand-off channel of C{process} broke; C{connections} are those it
        never acknowledged.
        """

    def workerStalled(process: IWorkerProcess, stalled: bool) -> None:
        """
        C{process} left connections unacknowledged too long (C{True}), or
        acknowledges again (C{False}).
        """

    def workerReclaimed(process: IWorkerProcess, connections: list[Connection]) -> None:
        """
        C{connections} were taken back from the stalled C{process}, which
        never received them.
        """


class ProcessReactor(IReactorProcess, EndpointReactor, HandoffReactor):
    """
    What the master needs of the reactor: to spawn worker processes, adopt
    their control channels, watch their hand-off channels, keep time, and
    listen on the endpoints it is given.
    """


def workerFields(process: IWorkerProcess) -> dict[str, Any]:
    """
    The fields that say which worker a log event is about, the same in
    every event of the master and in those it forwards from the worker.
    """
    return {"worker_id": process.workerId, "worker_pid": process.pid}


def workerRow(process: IWorkerProcess, restarts: int) -> dict[str, Any]:
    """
    One worker as plain data: id, pid, state, the C{restarts} of its slot,
    and the connections dispatched to it; the master's worker table and the
    control site's status (which adds the worker's figures) both start
    from it.
    """
    return {
        "id": process.workerId,
        "pid": process.pid,
        "state": process.state.value,
        "restarts": restarts,
        "dispatched": process.dispatched,
    }


class IWorkerProcess(Interface):
    """
    One worker process as the rest of the master uses it: the supervisor
    owns it (starts and stops it), the dispatch path sends it connections,
    the health monitor and the control plane read its figures.
    """

    workerId = Attribute("The slot this process fills (an C{int}).")
    pid = Attribute("Its pid once spawned, else C{None}.")
    state = Attribute("A L{WorkerState}.")
    startedAt = Attribute("When it was started (reactor seconds).")
    readyAt = Attribute("When it said it was ready, or C{None}.")
    appError = Attribute("Its one-line app load error, if it sent one.")
    appErrorDetails = Attribute("The traceback text that came with C{appError}.")
    ended = Attribute("A L{Deferred} fired with the exit reason once it is gone.")
    exitCause = Attribute("Why the master ended it (a RestartCause or an EndCause), or C{None}.")
    figures = Attribute("Its last reported L{commands.PingFigures}.")
    lastPing = Attribute("The round trip of its last answered ping, or C{None}.")
    dispatched = Attribute("Connections sent to it so far.")
    handoff = Attribute("Its L{HandoffSender}, once spawned.")
    control = Attribute("Its L{MasterControl} channel, once spawned.")
    finalMetrics = Attribute(
        "The app metrics snapshot it sent as it exited (bytes), or C{None}."
    )

    def spawn() -> None:
        """
        Start the process; a spawn that fails ends it at once.
        """

    killSent = Attribute("Whether the master sent it SIGKILL.")

    def stop(mode: NamedConstant, within: float = 0.0) -> None:
        """
        End it: L{DRAIN}, L{TERMINATE}, L{KILL} or L{ABORT}, then SIGKILL
        after C{within} seconds if it is still there.
        """

    def send(connections: list[Connection]) -> None:
        """
        Hand it C{connections}.
        """

    def callRemote(command: type[amp.Command], **arguments: Any) -> Deferred:
        """
        Call C{command} on it over its control channel.
        """

    def exitDescription(reason: Failure) -> str:
        """
        How it ended, in words (C{"exit 3"}, C{"signal KILL"}).
        """


@implementer(IWorkerProcess)
class WorkerProcess:
    """
    One running worker process and its two channels.

    @ivar workerId: the slot this process fills.
    @ivar state: one of L{STARTING}, L{READY}, L{DRAINING}, L{STOPPED}.
    @ivar appError: the worker's one-line app load error, if it sent one.
    @ivar ended: fires with the exit reason (a L{Failure}) when the process
        is gone.
    @ivar figures: the worker's last reported L{commands.PingFigures},
        from its last health ping.
    @ivar lastPing: the round trip of its last answered ping, in seconds.
    @ivar finalMetrics: the app metrics snapshot the worker sent as it
        exited (L{commands.FinalMetrics}), if it did.
    """

    def __init__(
        self,
        reactor: ProcessReactor,
        workerId: int,
        config: WorkerConfig,
        python: str,
        onReady: Callable[["WorkerProcess"], None],
        handoffObserver: IHandoffObserver,
        listWorkers: Callable[[], list[dict[str, Any]]],
        appLocator: Any = None,
        stallAfter: float | None = None,
    ) -> None:
        """
        @param onReady: called with this process once it is ready (by its
            supervisor, which owns it).
        @param handoffObserver: told what happens on this process's
            hand-off channel (the master's dispatch path).
        @param stallAfter: seconds of unacknowledged connections after which
            the hand-off channel reports a stall (C{None}: never).
        """
        self._reactor = reactor
        self.workerId = workerId
        self._config = config
        self._python = python
        self._onReady = onReady
        self._handoffObserver = handoffObserver
        self._stallAfter = stallAfter
        self._listWorkers = listWorkers
        self._appLocator = appLocator
        self.state = STARTING
        self.pid: int | None = None
        self.appError: str | None = None
        self.appErrorDetails = ""
        self.startedAt = reactor.seconds()
        self.readyAt: float | None = None
        self.ended: Deferred[Failure] = Deferred()
        self.control: MasterControl | None = None
        self.handoff: HandoffSender | None = None
        self.transport: Any = None
        self.figures = commands.PingFigures()
        self.dispatched = 0
        self.lastPing: float | None = None
        self.finalMetrics: bytes | None = None
        #: Why the master ended it, when it did (L{RestartCause.HANG},
        #: L{RestartCause.STARTUP}); a crash otherwise.
        self.exitCause: Any = None
        #: The SIGKILL that ends a L{stop} the process outlives.
        self._killer: IDelayedCall | None = None
        #: Whether the master sent it SIGKILL (an exit by SIGKILL it did
        #: not send may be the kernel's OOM killer).
        self.killSent = False
        #: The stacks it wrote since an L{ABORT} asked for them (C{None}:
        #: not asked, what it writes is dropped), and the moment of the
        #: kill that follows at the latest.
        self._stacks: bytearray | None = None
        self._abortBy = 0.0

    @property
    def name(self) -> str:
        return f"worker-{self.workerId}[{self.pid}]"

    def spawn(self) -> None:
        """
        Start the process with its control, hand-off and log channels.

        A process that cannot be started (the fork refused: C{EAGAIN} under
        C{RLIMIT_NPROC}, C{ENOMEM}; no descriptor left for a channel:
        C{EMFILE}, C{ENFILE}) leaves nothing open behind: it is L{STOPPED}
        and L{ended} has fired with a L{SpawnFailed} when this returns.  To
        the supervisor a spawn that fails is one more start-up that failed.
        A process started whose control channel cannot be opened is killed:
        it ends like a worker that exited before it was ready.
        """
        opened: list[socket.socket] = []
        try:
            opened += socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            opened += socketpair()
            controlOurs, controlTheirs, handoffOurs, handoffTheirs = opened
            self.transport = self._reactor.spawnProcess(
                _WorkerOutput(self),
                self._python,
                [self._python, "-m", "twisted_cluster.workermain", self._config.toJSON()],
                env=workerEnvironment(self._config.pythonPath),
                path=os.getcwd(),
                childFDs={
                    0: "w",
                    1: "r",
                    2: "r",
                    CONTROL_FD: controlTheirs.fileno(),
                    HANDOFF_FD: handoffTheirs.fileno(),
                    LOG_FD: "r",
                    STACKS_FD: "r",
                },
            )
        except OSError as e:
            for sock in opened:
                sock.close()
            self._spawnFailed(e)
            return
        controlTheirs.close()
        # The worker's end of the hand-off channel stays open here too: what
        # the worker has not received yet can be taken back (see
        # twisted_cluster._contract.handoff).
        handoffTheirs.setblocking(False)
        self.pid = self.transport.pid
        # The stacks pipe is read only once the stacks are asked for: a
        # worker writing there unasked blocks itself, not the master.
        self._stacksReader("stopReading")
        control = MasterControl(self, self._appLocator)
        try:
            controlOurs.setblocking(False)
            self._reactor.adoptStreamConnection(
                controlOurs.fileno(), socket.AF_UNIX, ChannelFactory(control)
            )
        except OSError as e:
            # adoptStreamConnection dup()s the socket: EMFILE.
            handoffOurs.close()
            handoffTheirs.close()
            log.warn(
                "worker {worker_id} pid {worker_pid}: cannot open its control channel "
                "({error}): killing it",
                cluster_event=logevents.WORKER_CONTROL_FAILED,
                **workerFields(self),
                error=_describeOSError(e),
            )
            self.stop(KILL)
            return
        finally:
            controlOurs.close()
        self.control = control
        observer = self._handoffObserver
        self.handoff = HandoffSender(
            self._reactor,
            handoffOurs,
            lambda taken, closed, returned: observer.workerAck(self, taken, closed, returned),
            self._handoffLost,
            stallAfter=self._stallAfter,
            onStall=lambda stalled: observer.workerStalled(self, stalled),
            peer=handoffTheirs,
            onReclaim=lambda connections: observer.workerReclaimed(self, connections),
        )

    def _spawnFailed(self, error: OSError) -> None:
        self.state = STOPPED
        self.transport = None
        self.ended.callback(Failure(SpawnFailed(_describeOSError(error))))

    def _readyReceived(self) -> None:
        if self.state == STARTING:
            self.state = READY
            self.readyAt = self._reactor.seconds()
            self._onReady(self)

    def _handoffLost(self, connections: list[Connection]) -> None:
        # The hand-off channel broke: this worker can take no connection
        # any more, so those it gives back must go to another one.
        if self.state in (STARTING, READY):
            self.state = DRAINING
        self._handoffObserver.workerLost(self, connections)

    def _startupFailed(self, error: str, details: str) -> None:
        self.appError = error
        self.appErrorDetails = details

    def send(self, connections: list[Connection]) -> None:
        """
        Hand C{connections} to this worker.
        """
        assert self.handoff is not None
        self.dispatched += len(connections)
        self.handoff.send(connections)

    def callRemote(self, command: type[amp.Command], **arguments: Any) -> Deferred:
        """
        Call C{command} on the worker.
        """
        assert self.control is not None
        return self.control.callRemote(command, **arguments)

    def stop(self, mode: NamedConstant, within: float = 0.0) -> None:
        """
        End this process: the one way the master ends a worker.

        Whatever the mode, the process takes no new work from now on, and
        is SIGKILLed if it is still there C{within} seconds from now (the
        grace period of a drain, the kill timeout of a SIGTERM).  Another
        call may bring that moment closer, never push it back; it is
        cancelled when the process exits.

        @param mode: L{DRAIN}, L{TERMINATE}, L{KILL} or L{ABORT} (its
            stacks first, and the SIGKILL as soon as they arrived).
        """
        if self.state == STOPPED:
            return
        if mode is KILL:
            self.state = DRAINING
            self._signal("KILL")
            return
        if mode is ABORT:
            self._abort(within)
            return
        if mode is DRAIN:
            self._drain(within)
        else:
            self.state = DRAINING
            self._signal("TERM")
        killer = self._killer
        if killer is not None and killer.active():
            if killer.getTime() <= self._reactor.seconds() + within:
                return
            killer.cancel()
        self._killer = self._reactor.callLater(within, self._outlived, mode, within)

    def _outlived(self, mode: NamedConstant, within: float) -> None:
        log.warn(
            "worker {worker_id} pid {worker_pid} still running {within:g}s after "
            "{stop}: killing it",
            cluster_event=logevents.WORKER_KILLED,
            **workerFields(self),
            within=within,
            stop="its drain began" if mode is DRAIN else "SIGTERM",
            stop_mode=mode.name,
        )
        self._signal("KILL")

    def _abort(self, within: float) -> None:
        """
        Ask for the process's stacks, and SIGKILL it once they have arrived
        (L{STACKS_QUIET} after the last of them) or C{within} seconds from
        now, whichever is first.  No SIGTERM: a blocked reactor cannot run
        its handler, and waiting for it only delays the replacement.
        """
        self.state = DRAINING
        if self._stacks is not None:
            return
        self._stacks = bytearray()
        self._abortBy = self._reactor.seconds() + within
        killer = self._killer
        if killer is not None and killer.active():
            killer.cancel()
        self._killer = self._reactor.callLater(within, self._aborted)
        self._stacksReader("startReading")
        self._signal(STACKS_SIGNAL)

    def _stacksReader(self, action: str) -> None:
        """
        Pause (C{"stopReading"}) or resume (C{"startReading"}) the master's
        reading of the stacks pipe, when the process transport has one.
        """
        pipes = getattr(self.transport, "pipes", None)
        reader = pipes.get(STACKS_FD) if isinstance(pipes, dict) else None
        if reader is not None:
            getattr(reader, action)()

    def _stacksReceived(self, data: bytes) -> None:
        stacks = self._stacks
        if stacks is None:
            # Not asked for: a worker writes nothing there on its own.
            return
        stacks += data[: max(STACKS_LIMIT - len(stacks), 0)]
        killer = self._killer
        if killer is not None and killer.active():
            now = self._reactor.seconds()
            killer.reset(max(min(now + STACKS_QUIET, self._abortBy) - now, 0.0))

    def _aborted(self) -> None:
        self._logStacks()
        self._signal("KILL")

    def _logStacks(self) -> None:
        """
        Log the stacks an L{ABORT} asked for, once, as one event whose
        C{stacks} field holds them (control characters escaped: the
        worker is untrusted).
        """
        stacks, self._stacks = self._stacks, None
        if stacks is None:
            return
        lines = stacks.decode("utf-8", "replace").splitlines()
        text = "\n".join(escapeControls(line) for line in lines)
        log.warn(
            "worker {worker_id} pid {worker_pid} is hung; its Python stacks, "
            "most recent call first:\n{stacks}" if text else
            "worker {worker_id} pid {worker_pid} is hung and wrote no stacks "
            "(a stopped process cannot)",
            cluster_event=logevents.WORKER_STACKS,
            worker_id=self.workerId,
            worker_pid=self.pid,
            stacks=text,
            truncated=len(stacks) >= STACKS_LIMIT,
        )

    def _drain(self, within: float) -> None:
        """
        Ask the worker to finish its connections and exit within C{within}
        seconds (the deadline its app is told).
        """
        if self.state in (STOPPED, DRAINING):
            return
        self.state = DRAINING
        if self.control is not None and self.control.transport is not None:
            self.callRemote(commands.Drain, within=within).addErrback(lambda _: None)

    def _signal(self, name: str | int) -> None:
        """
        Send the process a signal (C{"TERM"}, C{"KILL"}, or a number)
        unless it is gone.
        """
        if self.state == STOPPED or self.transport is None:
            return
        if name == "KILL":
            self.killSent = True
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass

    def _ended(self, reason: Failure) -> None:
        self._logStacks()
        self.state = STOPPED
        if self._killer is not None and self._killer.active():
            self._killer.cancel()
        if self.handoff is not None:
            self.handoff.close()
        if self.control is not None and self.control.transport is not None:
            self.control.transport.loseConnection()
        self.ended.callback(reason)

    def exitDescription(self, reason: Failure) -> str:
        """
        How the process ended, in words: C{"exit 3"}, C{"signal KILL"}.
        """
        value = reason.value
        if isinstance(value, SpawnFailed):
            return f"spawn failed: {value}"
        sig = getattr(value, "signal", None)
        if sig is not None:
            try:
                return f"signal {signal.Signals(sig).name[3:]}"
            except ValueError:
                return f"signal {sig}"
        return f"exit {getattr(value, 'exitCode', '?')}"
