"""
Upgrade the master in place (SIGUSR2), as nginx and gunicorn do, with the
roll-back they leave to the operator made automatic.

 1. The old master moves its PID file to C{PATH.oldbin} and starts a new
    master: the same command line (C{sys.orig_argv}), the same interpreter
    and working directory, the code now on disk.  The new one inherits the
    listening sockets, the control socket (only a fixed C{--control}
    endpoint; C{auto} names its socket after the master's pid, and the new
    master makes its own), a pipe to report on and one that tells it when
    the old master is gone (L{twisted_cluster._master.handover}).
 2. The new master adopts those sockets instead of binding them (their
    queues keep every connection meanwhile), writes C{PATH}, starts its
    workers and accepts beside the old master: the kernel hands each new
    connection to one of the two.  Then it reports C{ready}.
 3. The old master stops accepting, closes its descriptors of the sockets
    without shutting them down, drains its workers as on SIGTERM and exits
    0.  Its control site serves until it exits; the new master serves the
    control socket from then on.  A TERM or INT to the old master meanwhile
    (gunicorn's procedure: C{USR2} then C{TERM}) waits for this step: the
    old master serves until the new one is ready, so that the sockets are
    never left unserved; QUIT hands them over at once.
 4. A new master that exits before it is ready, reports a failure, or is
    not ready within L{MasterUpgrade}'s time limit (it is then stopped
    with SIGQUIT, SIGKILL 5 s later) changes nothing: the old master logs
    why and serves on, and moves its PID file back once the new one has
    exited (and removed its own).  A stop that waited for the upgrade is
    then not carried out (logged): the next stop signal stops.

L{MasterUpgrade} is the old master's half; the new one's is
L{twisted_cluster._master.succession.Successor}, and what passes between
them is L{twisted_cluster._master.handover}.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_cluster import logevents
from twisted_cluster._master.handover import (
    ENVIRONMENT,
    FIRST_SOCKET_FD,
    MAX_REPORT,
    PREDECESSOR_FD,
    STATUS_FD,
    Handover,
    parseReport,
)
from twisted_cluster._master.pidfile import PIDFile
from twisted_cluster._supervision.process import ProcessReactor

if TYPE_CHECKING:
    from twisted_cluster._master.succession import Successor

log = Logger()

#: Seconds the old master gives a new one, beyond C{--start-timeout}, to
#: start, load the app and have all its workers ready.
EXTRA_TIME = 30.0

#: Seconds a failed new master has to exit after SIGQUIT before SIGKILL.
KILL_AFTER = 5.0

#: The suffix of the old master's PID file during an upgrade.
OLDBIN = ".oldbin"


def _describeExit(reason: Failure) -> str:
    """
    How a process ended: C{"exit 1"}, C{"signal KILL"}.
    """
    value = reason.value
    number = getattr(value, "signal", None)
    if number is not None:
        try:
            return f"signal {signal.Signals(number).name[3:]}"
        except ValueError:
            return f"signal {number}"
    return f"exit {getattr(value, 'exitCode', '?')}"


class _NewMasterProtocol(ProcessProtocol):
    """
    Reads the new master's report; tells its upgrade when it exits.
    """

    def __init__(self, upgrade: "MasterUpgrade") -> None:
        self._upgrade = upgrade
        self._buffer = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != STATUS_FD or len(self._buffer) > MAX_REPORT:
            return
        self._buffer += data
        line, newline, _ = self._buffer.partition(b"\n")
        if newline or len(self._buffer) > MAX_REPORT:
            self._buffer = b"x" * (MAX_REPORT + 1)
            self._upgrade._reported(*parseReport(line[:MAX_REPORT]))

    def processEnded(self, reason: Failure) -> None:
        # Ended: exited, and its report pipe closed too (a new master that
        # daemonizes, under twistd, reports from its grandchild).
        self._upgrade._exited(reason)


class MasterUpgrade:
    """
    The old master's half of an upgrade: starts the new master, waits for
    its report, and hands over or carries on.

    @ivar newPid: the pid of the new master under way, or C{None}.
    """

    def __init__(
        self,
        reactor: ProcessReactor,
        service: Any,
        argv: Sequence[str],
        cwd: str,
        onHandedOver: Callable[[], None],
        pidfile: PIDFile | None = None,
        timeout: float = 60.0 + EXTRA_TIME,
        environ: Mapping[str, str] = os.environ,
        successor: Successor | None = None,
    ) -> None:
        """
        @param reactor: provides C{IReactorProcess} and C{IReactorTime}.
        @param service: the L{ClusterService} (C{handOverFDs}, C{handOver},
            C{stopping}, C{workerPolicy}).
        @param argv: the command line to run; C{argv[0]} is the program.
        @param onHandedOver: called once the new master took over: stop
            this one gracefully.
        @param timeout: seconds the new master has to be ready.
        @param successor: this master's own L{Successor}, when it is still
            taking over from another one (no upgrade until it is done).
        """
        self._reactor = reactor
        self._service = service
        self._argv = list(argv)
        self._cwd = cwd
        self._onHandedOver = onHandedOver
        self._pidfile = pidfile
        self._timeout = timeout
        self._environ = environ
        self._successor = successor
        self._transport: Any = None
        self._timer: Any = None
        self._killer: Any = None
        #: C{None} while the new master is starting; then whether it took over.
        self._outcome: bool | None = None
        self._pidPath: str | None = None
        self.newPid: int | None = None
        #: Whether a stop (TERM, INT) waits for the new master's report.
        self._stopWaiting = False
        #: Called when a stop that waited is not carried out because the
        #: new master failed: the stop signals are armed again
        #: (L{twisted_cluster._master.signals.StopSignals.rearm}).
        self.onStopCancelled: Callable[[], None] = lambda: None

    def refusal(self) -> str | None:
        """
        Why an upgrade cannot start now, or C{None} when it can.
        """
        if self._transport is not None:
            if self._outcome is None:
                return f"an upgrade is under way: the new master pid {self.newPid} is starting"
            if self._outcome:
                return f"this master handed over to pid {self.newPid} and is exiting"
            return f"the failed new master pid {self.newPid} is still exiting"
        if self._service.stopping:
            return "the cluster is stopping"
        if self._successor is not None and self._successor.takingOver:
            return (
                f"this master is still taking over from pid {self._successor.parent}, "
                "which has not exited yet"
            )
        return None

    def request(self) -> None:
        """
        Start an upgrade (SIGUSR2), unless L{refusal} says why not (logged).
        """
        refusal = self.refusal()
        if refusal is not None:
            log.warn("master upgrade refused: {reason}",
                     cluster_event=logevents.UPGRADE_REFUSED, reason=refusal,
                     master_pid=os.getpid(), new_master_pid=self.newPid)
            return
        listeners, control = self._service.handOverFDs()
        childFDs: dict[int, Any] = {
            fd: fd for fd in (0, 1, 2) if _isOpen(fd)
        }
        childFDs[STATUS_FD] = "r"
        childFDs[PREDECESSOR_FD] = "w"
        inherited = []
        for number, (description, fd) in enumerate(listeners, FIRST_SOCKET_FD):
            childFDs[number] = fd
            inherited.append((description, number))
        controlFD = None
        if control is not None:
            controlFD = FIRST_SOCKET_FD + len(listeners)
            childFDs[controlFD] = control
        handover = Handover(
            os.getpid(), tuple(inherited), controlFD, self._service.workerPolicy
        )
        environment = dict(self._environ)
        environment[ENVIRONMENT] = handover.toJSON()
        self._movePIDFile(aside=True)
        self._outcome = None
        try:
            self._transport = self._reactor.spawnProcess(
                _NewMasterProtocol(self), self._argv[0], self._argv,
                env=environment, path=self._cwd, childFDs=childFDs,
            )
        except OSError as e:
            self._transport = None
            self._movePIDFile(aside=False)
            log.error(
                "master upgrade failed: cannot start a new master: {reason}; this "
                "master keeps serving", reason=e.strerror or str(e), cause="spawn",
                cluster_event=logevents.UPGRADE_FAILED,
                master_pid=os.getpid(),
            )
            return
        self.newPid = self._transport.pid
        log.info(
            "master upgrade: started a new master pid {new_master_pid} "
            "({listeners} listening sockets handed over); this master pid "
            "{master_pid} serves until its workers are ready",
            cluster_event=logevents.UPGRADE_STARTED,
            new_master_pid=self.newPid, master_pid=os.getpid(),
            listeners=len(inherited),
        )
        self._timer = self._reactor.callLater(self._timeout, self._timedOut)

    def stopping(self) -> bool:
        """
        This master is told to stop gracefully (TERM, INT).  During an
        upgrade the stop waits for the new master's report: this master
        keeps accepting and serving meanwhile, so that the sockets are
        served at every moment whatever the new master does.  Once the new
        one is ready, this one hands over and stops (C{onHandedOver}); if
        the new one gives up, this one serves on, says so, and the next
        stop signal stops it (L{onStopCancelled}).  That is gunicorn's
        upgrade procedure, C{USR2} then C{TERM} to the old master, which
        must neither take the sockets away from the new master nor leave
        them unserved while the new one starts or fails.

        @return: whether the stop waits for the upgrade (the caller stops
            nothing now).
        """
        if not self._underWay():
            return False
        self._stopWaiting = True
        log.info(
            "stop during an upgrade: this master pid {master_pid} serves until "
            "the new master pid {new_master_pid} is ready, then drains and exits",
            cluster_event=logevents.UPGRADE_STOP_DEFERRED,
            new_master_pid=self.newPid, master_pid=os.getpid(),
        )
        return True

    def stopNow(self) -> None:
        """
        This master's workers are killed (QUIT, a second INT): during an
        upgrade the sockets go to the new master now (their queues keep
        the connections until its workers are ready), and a stop that
        waited for the upgrade happens now (C{onHandedOver}).
        """
        if not self._underWay():
            return
        self._handOver(
            "stopping now during an upgrade: the sockets go to the new master pid "
            "{new_master_pid} now; this master pid {master_pid} exits"
        )
        if self._stopWaiting:
            self._onHandedOver()

    def _handOver(self, message: str) -> None:
        """
        The upgrade succeeded, or must end now: the sockets go to the new
        master, and C{message} says why in the log.
        """
        self._cancelTimer()
        self._outcome = True
        log.info(
            message,
            cluster_event=logevents.UPGRADE_HANDED_OVER,
            new_master_pid=self.newPid, master_pid=os.getpid(),
        )
        self._service.handOver()

    def _underWay(self) -> bool:
        return self._transport is not None and self._outcome is None

    def _movePIDFile(self, aside: bool) -> None:
        pidfile = self._pidfile
        if pidfile is None:
            return
        if aside:
            self._pidPath = pidfile.path
            pidfile.moveTo(pidfile.path + OLDBIN)
        elif self._pidPath is not None and pidfile.path != self._pidPath:
            pidfile.moveTo(self._pidPath)

    def _reported(self, ready: bool, reason: str) -> None:
        if self._outcome is not None:
            return
        if ready:
            self._handOver(
                "master upgrade: the new master pid {new_master_pid} is ready with "
                "its workers; this master pid {master_pid} hands over, drains and exits"
            )
            self._onHandedOver()
        else:
            self._failed(f"gave up: {reason}", "failed")

    def _timedOut(self) -> None:
        self._timer = None
        self._failed(f"was not ready after {self._timeout:g}s", "timeout")

    def _failed(self, reason: str, cause: str) -> None:
        self._cancelTimer()
        self._outcome = False
        log.error(
            "master upgrade failed: the new master pid {new_master_pid} {reason}; "
            "this master pid {master_pid} keeps serving",
            cluster_event=logevents.UPGRADE_FAILED,
            new_master_pid=self.newPid, reason=reason, cause=cause,
            master_pid=os.getpid(),
        )
        if self._stopWaiting:
            self._stopWaiting = False
            log.warn(
                "the stop asked during the failed upgrade is not carried out: "
                "this master pid {master_pid} keeps serving; stop it again to stop it",
                cluster_event=logevents.UPGRADE_STOP_CANCELLED,
                new_master_pid=self.newPid, master_pid=os.getpid(),
            )
            self.onStopCancelled()
        if self._transport is not None:
            # Twisted names only TERM, KILL and INT: others go by number.
            self._signal(signal.SIGQUIT)
            self._killer = self._reactor.callLater(KILL_AFTER, self._signal, signal.SIGKILL)

    def _signal(self, number: int) -> None:
        if self._transport is None:
            return
        with contextlib.suppress(ProcessExitedAlready, OSError):
            self._transport.signalProcess(number)

    def _exited(self, reason: Failure) -> None:
        if self._outcome is None:
            self._failed(f"exited before it was ready ({_describeExit(reason)})", "exited")
        if self._killer is not None and self._killer.active():
            self._killer.cancel()
        self._killer = None
        if self._outcome is False:
            # Its PID file, if it wrote one, is gone with it: this master's
            # comes back.  Then another attempt may start.
            self._movePIDFile(aside=False)
            self._transport = None

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def _isOpen(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
