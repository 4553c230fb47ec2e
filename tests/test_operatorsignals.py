"""
Unit tests of the master's operator signals and what they drive: the stop
decision (TERM, INT, QUIT), the handler table, the upgrade's two halves
(SIGUSR2), the log file reopened (SIGUSR1), the PID file moved aside, and
C{--reload}'s policy.  Injected clocks and fakes, no processes, no sleep.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
from typing import Any

from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.support import shortTempDir
from twisted_cluster import logevents
from twisted_cluster._master import handover as contract
from twisted_cluster._master import upgrade
from twisted_cluster._master.handover import (
    ENVIRONMENT,
    Handover,
    HandoverError,
    parseReport,
    takeHandover,
)
from twisted_cluster._master.logreopen import LogReopener, logDescriptor, logFilePath
from twisted_cluster._master.pidfile import PIDFile
from twisted_cluster._master.reload import ReloadPolicy, appDirectories
from twisted_cluster._master.signals import StopSignals, installSignals
from twisted_cluster._master.succession import Successor
from twisted_cluster._master.upgrade import MasterUpgrade
from twisted_cluster.contexts import WorkerContext

#: What an nginx or gunicorn operator habitually sends a master.
HABITUAL = ("HUP", "USR1", "USR2", "QUIT", "TERM", "INT", "TTIN", "TTOU", "WINCH")


def logged(case: SynchronousTestCase) -> EventLoggingObserver:
    return EventLoggingObserver.createWithCleanup(case, globalLogPublisher)


class StopSignalsTests(SynchronousTestCase):
    """
    L{StopSignals}: TERM and INT stop gracefully, QUIT kills the workers.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.stops: list[None] = []
        self.kills: list[None] = []
        self.signals = StopSignals(
            self.clock, lambda: self.stops.append(None), lambda: self.kills.append(None)
        )

    def test_termStopsGracefullyOnceAndARepeatChangesNothing(self) -> None:
        self.signals.received(signal.SIGTERM)
        self.clock.advance(5)
        self.signals.received(signal.SIGTERM)
        self.assertEqual((len(self.stops), len(self.kills)), (1, 0))

    def test_secondInterruptASecondLaterKillsTheWorkers(self) -> None:
        self.signals.received(signal.SIGINT)
        self.clock.advance(0.5)
        self.signals.received(signal.SIGINT)
        self.assertEqual(self.kills, [])
        self.clock.advance(0.5)
        self.signals.received(signal.SIGINT)
        self.assertEqual((len(self.stops), len(self.kills)), (1, 1))

    def test_quitKillsTheWorkersAndStops(self) -> None:
        self.signals.received(signal.SIGQUIT)
        self.assertEqual((len(self.stops), len(self.kills)), (1, 1))

    def test_rearmedStopSignalStopsAgain(self) -> None:
        """
        A stop that was not carried out (it waited for an upgrade that
        failed): the next TERM stops, where a repeat would change nothing.
        """
        self.signals.received(signal.SIGTERM)
        self.signals.rearm()
        self.signals.received(signal.SIGTERM)
        self.assertEqual(len(self.stops), 2)

    def test_quitDuringAGracefulStopKillsTheWorkersOnce(self) -> None:
        self.signals.received(signal.SIGTERM)
        self.signals.received(signal.SIGQUIT)
        self.signals.received(signal.SIGQUIT)
        self.assertEqual((len(self.stops), len(self.kills)), (1, 1))


class _ThreadlessReactor:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self.calls.append(lambda: f(*args, **kwargs))


class InstallSignalsTests(SynchronousTestCase):
    """
    L{installSignals} leaves no habitual signal to its default action.
    """

    def setUp(self) -> None:
        for name in HABITUAL:
            number = getattr(signal, f"SIG{name}")
            self.addCleanup(signal.signal, number, signal.getsignal(number))

    def test_noHabitualSignalKeepsItsDefaultAction(self) -> None:
        installSignals(
            _ThreadlessReactor(),
            StopSignals(Clock(), lambda: None, lambda: None),
            {getattr(signal, f"SIG{n}"): lambda: None
             for n in ("HUP", "USR1", "USR2", "TTIN", "TTOU")},
        )
        for name in HABITUAL:
            handler = signal.getsignal(getattr(signal, f"SIG{name}"))
            self.assertTrue(callable(handler), f"SIG{name} keeps its default action")

    def test_operationRunsInTheReactorThread(self) -> None:
        reactor = _ThreadlessReactor()
        done: list[str] = []
        installSignals(
            reactor, StopSignals(Clock(), lambda: None, lambda: None),
            {signal.SIGUSR2: lambda: done.append("upgrade")},
        )
        handler: Any = signal.getsignal(signal.SIGUSR2)
        handler(signal.SIGUSR2, None)
        self.assertEqual(done, [])
        [call] = reactor.calls
        call()
        self.assertEqual(done, ["upgrade"])


    def test_winchIsLoggedOnce(self) -> None:
        reactor = _ThreadlessReactor()
        installSignals(reactor, StopSignals(Clock(), lambda: None, lambda: None), {})
        handler: Any = signal.getsignal(signal.SIGWINCH)
        for _ in range(3):
            handler(signal.SIGWINCH, None)
        events = logged(self)
        for call in reactor.calls:
            call()
        self.assertEqual([e["signal"] for e in events], ["WINCH"])


class HandoverTests(SynchronousTestCase):
    """
    L{Handover}, L{takeHandover}, L{parseReport}: what crosses between the
    two masters.
    """

    def test_roundTrip(self) -> None:
        handover = Handover(41, (("tcp:8080", 5), ("unix:/s", 6)), 7, 0)
        self.assertEqual(Handover.fromJSON(handover.toJSON()), handover)

    def test_sameEndpointTwiceKeepsBothInOrder(self) -> None:
        handover = Handover(1, (("tcp:0", 5), ("tcp:0", 6)))
        self.assertEqual(handover.inherited(), {"tcp:0": [5, 6]})

    def inherited(self) -> tuple[int, int, list[tuple[str, int]]]:
        """
        What an old master hands over, as this process's descriptors: the
        report pipe, the old master's pipe, a TCP listener on 127.0.0.1
        and a UNIX one (closed at the end of the test).
        """
        descriptors: list[int] = []
        self.addCleanup(lambda: [os.close(fd) for fd in descriptors])
        status, predecessor = os.pipe()[1], os.pipe()[0]
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        path = os.path.join(shortTempDir(self), "s")
        unix = socket.socket(socket.AF_UNIX)
        unix.bind(path)
        unix.listen(1)
        port = tcp.getsockname()[1]
        listeners = [(f"tcp:{port}:interface=127.0.0.1", tcp.detach()),
                     (f"unix:{path}", unix.detach())]
        descriptors += [status, predecessor, *(fd for _, fd in listeners)]
        return status, predecessor, listeners

    def take(self, handover: Handover, parent: int, status: int, predecessor: int) -> Any:
        environ = {ENVIRONMENT: handover.toJSON()}
        taken = takeHandover(environ, parent, statusFD=status, predecessorFD=predecessor)
        self.assertNotIn(ENVIRONMENT, environ, "a worker must not see it")
        return taken

    def test_takenByTheNamedParentsChild(self) -> None:
        status, predecessor, listeners = self.inherited()
        handover = Handover(41, tuple(listeners))
        self.assertEqual(self.take(handover, 41, status, predecessor), handover)

    def test_takenWhateverThePidWhenTheDescriptorsAreHere(self) -> None:
        """
        The old master exited, or is a zombie its parent never reaped
        (C{kill(pid, 0)} still succeeds on it) or still runs: the parent
        pid differs, and what it handed over is here, so it is taken.
        The USR2-then-TERM upgrade under a parent that does not reap once
        took this for a stray variable and bound afresh, on top of its own
        inherited socket.
        """
        status, predecessor, listeners = self.inherited()
        handover = Handover(os.getpid(), tuple(listeners))
        self.assertEqual(self.take(handover, 1, status, predecessor), handover)

    def test_strayVariableWithoutTheDescriptorsIsIgnored(self) -> None:
        """
        A process that inherited the variable but not the descriptors (a
        pid other than its parent) binds its own sockets.
        """
        status, predecessor, listeners = self.inherited()
        tcp = socket.socket()
        self.addCleanup(tcp.close)
        for wrong in [
            Handover(41, ((listeners[0][0], tcp.fileno()),)),  # not listening
            Handover(41, (("tcp:1", listeners[0][1]),)),  # another port
            Handover(41, (("tcp:0", listeners[1][1]),)),  # a UNIX socket
            Handover(41, (("unix:/elsewhere", listeners[1][1]),)),
            Handover(41, (), control=tcp.fileno()),
        ]:
            self.assertIsNone(self.take(wrong, 42, status, predecessor), wrong)
        self.assertIsNone(self.take(Handover(41), 42, status, tcp.fileno()))
        self.assertIsNone(self.take(Handover(41), 42, 1000, predecessor))

    def test_missingDescriptorsFromTheParentAreAnError(self) -> None:
        """
        This process's own parent describes what it did not hand over: one
        line that says which, instead of binding on top of it.
        """
        status, predecessor, listeners = self.inherited()
        handover = Handover(41, (("tcp:1", listeners[0][1]),))
        environ = {ENVIRONMENT: handover.toJSON()}
        error = self.assertRaises(HandoverError, takeHandover, environ, 41,
                                  statusFD=status, predecessorFD=predecessor)
        self.assertIn("port", str(error))
        self.assertNotIn("\n", str(error))

    def test_malformedDescriptionIsAnError(self) -> None:
        for text in ("", "[]", '{"parent": "x", "listeners": [], "control": null}'):
            self.assertRaises(HandoverError, takeHandover, {ENVIRONMENT: text}, 1)

    def test_reports(self) -> None:
        self.assertEqual(parseReport(b"ready\n"), (True, ""))
        self.assertEqual(parseReport(b"failed no module named x"),
                         (False, "no module named x"))
        self.assertFalse(parseReport(b"\xff garbage")[0])


@implementer(IProcessTransport)
class FakeProcess:
    """
    What C{spawnProcess} returns, with the signals it was sent.
    """

    pid = 4321
    pipes: dict[int, Any] = {}

    def __init__(self) -> None:
        self.signals: list[str] = []
        self.exited = False

    def signalProcess(self, signalID: Any) -> None:
        if self.exited:
            raise ProcessExitedAlready()
        # As Twisted's: a name only for TERM, KILL and INT.
        if isinstance(signalID, str) and signalID not in ("TERM", "KILL", "INT"):
            raise TypeError(f"{signalID!r} cannot be interpreted as an integer")
        self.signals.append(signalID)

    def closeStdin(self) -> None: ...
    def closeStdout(self) -> None: ...
    def closeStderr(self) -> None: ...
    def closeChildFD(self, descriptor: int) -> None: ...
    def writeToChild(self, childFD: int, data: bytes) -> None: ...
    def loseConnection(self) -> None: ...
    def write(self, data: bytes) -> None: ...
    def writeSequence(self, data: Any) -> None: ...
    def getPeer(self) -> Any: ...
    def getHost(self) -> Any: ...


class FakeProcessReactor(Clock):
    """
    A clock that records the processes it is asked to spawn.
    """

    def __init__(self, fails: OSError | None = None) -> None:
        super().__init__()
        self.spawned: list[dict[str, Any]] = []
        self._fails = fails

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: Any,
                     path: str, childFDs: dict[int, Any]) -> FakeProcess:
        if self._fails is not None:
            raise self._fails
        process = FakeProcess()
        self.spawned.append(dict(protocol=protocol, executable=executable, args=args,
                                 env=env, path=path, childFDs=childFDs, process=process))
        return process


class FakeService:
    stopping = False
    workerPolicy = 0

    def __init__(self) -> None:
        self.handedOver = 0

    def handOverFDs(self) -> tuple[list[tuple[str, int]], int | None]:
        return [("tcp:8080", 11), ("unix:/run/a.sock", 12)], 13

    def handOver(self) -> None:
        self.handedOver += 1


class MasterUpgradeTests(SynchronousTestCase):
    """
    L{MasterUpgrade}: the old master's half.
    """

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.service = FakeService()
        self.handedOver: list[None] = []
        directory = self.mktemp()
        os.makedirs(directory)
        self.pidPath = os.path.join(directory, "cluster.pid")
        self.pidfile = PIDFile(self.pidPath)
        self.pidfile.acquire()
        self.upgrade = MasterUpgrade(
            self.reactor, self.service, ["/usr/bin/python3", "-m", "twisted", "cluster"],
            "/srv/app", lambda: self.handedOver.append(None), pidfile=self.pidfile,
            timeout=90, environ={"HOME": "/root"},
        )
        self.events = logged(self)

    def spawned(self) -> dict[str, Any]:
        [spawned] = self.reactor.spawned
        return spawned

    def test_newMasterInheritsTheSocketsAndTheSameCommandLine(self) -> None:
        self.upgrade.request()
        spawned = self.spawned()
        verifyObject(IProcessTransport, spawned["process"])
        self.assertEqual(spawned["args"], ["/usr/bin/python3", "-m", "twisted", "cluster"])
        self.assertEqual(spawned["path"], "/srv/app")
        fds = spawned["childFDs"]
        self.assertEqual((fds[contract.STATUS_FD], fds[contract.PREDECESSOR_FD]), ("r", "w"))
        self.assertEqual((fds[5], fds[6], fds[7]), (11, 12, 13))
        handover = Handover.fromJSON(spawned["env"][ENVIRONMENT])
        self.assertEqual(handover, Handover(os.getpid(),
                                            (("tcp:8080", 5), ("unix:/run/a.sock", 6)), 7, 0))
        self.assertEqual(spawned["env"]["HOME"], "/root")

    def test_pidFileMovesAsideAndStaysThereOnSuccess(self) -> None:
        self.upgrade.request()
        self.assertFalse(os.path.exists(self.pidPath))
        self.assertEqual(PIDFile(self.pidPath + ".oldbin").read(), os.getpid())
        self.spawned()["protocol"].childDataReceived(contract.STATUS_FD, b"ready\n")
        self.assertEqual((self.service.handedOver, len(self.handedOver)), (1, 1))
        self.assertEqual(self.pidfile.path, self.pidPath + ".oldbin")

    def test_secondRequestDuringAnUpgradeIsRefusedWithItsReason(self) -> None:
        self.upgrade.request()
        self.upgrade.request()
        self.assertEqual(len(self.reactor.spawned), 1)
        [refused] = [e for e in self.events if "reason" in e and e.get("new_master_pid")]
        self.assertIn("4321", refused["reason"])

    def test_refusedWhileStopping(self) -> None:
        self.service.stopping = True
        self.upgrade.request()
        self.assertEqual(self.reactor.spawned, [])
        self.assertIsNotNone(self.upgrade.refusal())

    def test_reportedFailureKeepsThisMasterAndMovesThePIDFileBack(self) -> None:
        self.upgrade.request()
        spawned = self.spawned()
        spawned["protocol"].childDataReceived(contract.STATUS_FD, b"failed bad app\n")
        self.assertEqual((self.service.handedOver, self.handedOver), (0, []))
        [failed] = [e for e in self.events if e.get("cause") == "failed"]
        self.assertEqual(failed["new_master_pid"], 4321)
        process = spawned["process"]
        self.assertEqual(process.signals, [signal.SIGQUIT])
        self.reactor.advance(upgrade.KILL_AFTER)
        self.assertEqual(process.signals, [signal.SIGQUIT, signal.SIGKILL])
        # Until it exits, another upgrade waits; then it may start.
        self.assertIsNotNone(self.upgrade.refusal())
        self.assertEqual(PIDFile(self.pidPath + ".oldbin").read(), os.getpid(),
                         "the PID file comes back once the new master is gone")
        spawned["protocol"].processEnded(Failure(ProcessTerminated(1)))
        self.assertIsNone(self.upgrade.refusal())
        self.assertEqual(PIDFile(self.pidPath).read(), os.getpid())
        self.assertFalse(os.path.exists(self.pidPath + ".oldbin"))

    def test_exitBeforeReadyIsAFailure(self) -> None:
        self.upgrade.request()
        spawned = self.spawned()
        spawned["process"].exited = True
        spawned["protocol"].processEnded(Failure(ProcessTerminated(1)))
        [failed] = [e for e in self.events if e.get("cause") == "exited"]
        self.assertEqual(PIDFile(self.pidPath).read(), os.getpid())
        self.assertIsNone(self.upgrade.refusal())
        self.assertEqual(self.handedOver, [])

    def test_notReadyInTimeIsStoppedAndAFailure(self) -> None:
        self.upgrade.request()
        self.reactor.advance(89)
        self.assertEqual(self.spawned()["process"].signals, [])
        self.reactor.advance(1)
        self.assertEqual(self.spawned()["process"].signals, [signal.SIGQUIT])
        self.assertEqual([e["cause"] for e in self.events if "cause" in e], ["timeout"])

    def test_readyAfterTheTimeoutChangesNothing(self) -> None:
        self.upgrade.request()
        self.reactor.advance(90)
        self.spawned()["protocol"].childDataReceived(contract.STATUS_FD, b"ready\n")
        self.assertEqual(self.handedOver, [])

    def test_spawnRefusedKeepsServing(self) -> None:
        self.reactor._fails = OSError(11, "Resource temporarily unavailable")
        self.upgrade.request()
        self.assertEqual(PIDFile(self.pidPath).read(), os.getpid())
        self.assertEqual([e["cause"] for e in self.events if "cause" in e], ["spawn"])
        self.assertIsNone(self.upgrade.refusal())

    def test_successorStillTakingOverRefuses(self) -> None:
        successor = Successor(Clock(), Handover(99), statusFD=-1, predecessorFD=-1)
        self.upgrade._successor = successor
        self.assertIn("99", self.upgrade.refusal() or "")

    def test_stopDuringAnUpgradeServesUntilTheNewMasterIsReady(self) -> None:
        """
        TERM during an upgrade (gunicorn's USR2 then TERM): this master
        keeps its sockets and serves until the new one is ready, then
        hands over and stops.
        """
        self.upgrade.request()
        self.assertTrue(self.upgrade.stopping())
        self.assertEqual((self.service.handedOver, self.handedOver), (0, []))
        [deferred] = [e for e in self.events
                      if e.get("cluster_event") == logevents.UPGRADE_STOP_DEFERRED]
        self.assertEqual(deferred["new_master_pid"], 4321)
        protocol = self.spawned()["protocol"]
        protocol.childDataReceived(contract.STATUS_FD, b"ready\n")
        self.assertEqual((self.service.handedOver, len(self.handedOver)), (1, 1))
        self.reactor.advance(1000)
        self.assertEqual(self.spawned()["process"].signals, [])

    def test_stopDuringAnUpgradeThatFailsKeepsServingAndRearms(self) -> None:
        """
        A new master that gives up after a TERM to this one leaves the
        sockets with this master, which serves on, says that the stop is
        not carried out, and arms the stop signals again.
        """
        rearmed: list[None] = []
        self.upgrade.onStopCancelled = lambda: rearmed.append(None)
        self.upgrade.request()
        self.upgrade.stopping()
        self.spawned()["protocol"].childDataReceived(contract.STATUS_FD, b"failed bad app\n")
        self.assertEqual((self.service.handedOver, self.handedOver), (0, []))
        self.assertEqual(rearmed, [None])
        [cancelled] = [e for e in self.events
                       if e.get("cluster_event") == logevents.UPGRADE_STOP_CANCELLED]
        self.assertEqual(cancelled["log_level"].name, "warn")
        # The next stop is not held back by the failed new master.
        self.assertFalse(self.upgrade.stopping())

    def test_stopDuringAnUpgradeThatTimesOutKeepsServing(self) -> None:
        rearmed: list[None] = []
        self.upgrade.onStopCancelled = lambda: rearmed.append(None)
        self.upgrade.request()
        self.upgrade.stopping()
        self.reactor.advance(90)
        self.assertEqual((self.service.handedOver, self.handedOver, rearmed), (0, [], [None]))

    def test_stopNowDuringAnUpgradeHandsOverAtOnce(self) -> None:
        """
        QUIT (the workers killed) during an upgrade: the sockets go to
        the new master now; a stop that waited happens now too.
        """
        self.upgrade.request()
        self.upgrade.stopNow()
        self.assertEqual((self.service.handedOver, self.handedOver), (1, []))
        self.assertFalse(self.upgrade.stopping())
        self.upgrade.stopNow()
        self.assertEqual(self.service.handedOver, 1)

    def test_stopNowAfterAWaitingStopStops(self) -> None:
        self.upgrade.request()
        self.upgrade.stopping()
        self.upgrade.stopNow()
        self.assertEqual((self.service.handedOver, len(self.handedOver)), (1, 1))

    def test_stopWithNoUpgradeChangesNothing(self) -> None:
        self.assertFalse(self.upgrade.stopping())
        self.upgrade.stopNow()
        self.assertEqual((self.service.handedOver, self.handedOver), (0, []))

    def test_exitAfterHandOverIsNotAFailure(self) -> None:
        self.upgrade.request()
        protocol = self.spawned()["protocol"]
        protocol.childDataReceived(contract.STATUS_FD, b"rea")
        protocol.childDataReceived(contract.STATUS_FD, b"dy\n")
        protocol.processEnded(Failure(ProcessDone(0)))
        self.assertEqual([e for e in self.events if "cause" in e], [])
        self.assertEqual(len(self.handedOver), 1)


class SuccessorReportTests(SynchronousTestCase):
    """
    L{upgrade.Successor.report}: one line, once, to a pipe.
    """

    def test_oneLineOnce(self) -> None:
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        successor = Successor(Clock(), Handover(1), statusFD=w, predecessorFD=-1)
        successor.reportFailure("cannot load\n  the app")
        successor.report(contract.READY)
        self.assertEqual(os.read(r, 100), b"failed cannot load the app\n")
        self.assertEqual(os.read(r, 100), b"", "the pipe is closed after the report")

    def test_goneOldMasterIsNoError(self) -> None:
        r, w = os.pipe()
        os.close(r)
        successor = Successor(Clock(), Handover(1), statusFD=w, predecessorFD=-1)
        successor.report(contract.READY)


class SuccessorStartTests(SynchronousTestCase):
    """
    L{Successor.start}: ready reported once every worker is; the control
    socket served once the old master's pipe ends.
    """

    class _Service:
        def __init__(self) -> None:
            from twisted_cluster._master.config import ClusterConfig

            self.config = ClusterConfig(workers=2)
            self.waiting: list[Any] = []
            self.controlServed = 0

        def whenReady(self, workers: int) -> Any:
            from twisted.internet.defer import Deferred

            d: Deferred[Any] = Deferred()
            self.waiting.append((workers, d))
            return d

        def listenInheritedControl(self) -> None:
            self.controlServed += 1

    def test_readyOnceEveryWorkerIsAndControlOnceTheOldMasterIsGone(self) -> None:
        from twisted.internet.testing import MemoryReactor

        status, report = os.pipe()
        predecessor, old = os.pipe()
        self.addCleanup(os.close, status)
        reactor = MemoryReactor()
        successor = Successor(reactor, Handover(1), statusFD=report, predecessorFD=predecessor)
        service = self._Service()
        successor.start(service)
        [(workers, ready)] = service.waiting
        self.assertEqual(workers, 2)
        ready.callback(service)
        self.assertEqual(os.read(status, 100), b"ready\n")
        [watcher] = reactor.getReaders()
        self.assertTrue(successor.takingOver)
        os.close(old)
        why = watcher.doRead()
        watcher.connectionLost(Failure(why))
        self.assertEqual((successor.takingOver, service.controlServed), (False, 1))

    def test_noPipeFromTheOldMasterMeansItIsGone(self) -> None:
        from twisted.internet.testing import MemoryReactor

        closed, other = os.pipe()
        os.close(closed)
        os.close(other)
        successor = Successor(MemoryReactor(), Handover(1), statusFD=-1, predecessorFD=closed)
        service = self._Service()
        successor.start(service)
        self.assertEqual(service.controlServed, 1)


class PIDFileMoveTests(SynchronousTestCase):
    """
    L{PIDFile.moveTo}: the old master's file goes aside and comes back.
    """

    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        self.path = os.path.join(directory, "c.pid")
        self.pidfile = PIDFile(self.path)
        self.pidfile.acquire()

    def test_movesAndReleasesFromItsNewPlace(self) -> None:
        self.assertTrue(self.pidfile.moveTo(self.path + ".oldbin"))
        self.assertFalse(os.path.exists(self.path))
        self.pidfile.release()
        self.assertFalse(os.path.exists(self.path + ".oldbin"))

    def test_replacesAStaleFileButNotALiveOne(self) -> None:
        target = self.path + ".back"
        with open(target, "w") as f:
            f.write("%d\n" % (os.getppid(),))
        self.assertFalse(self.pidfile.moveTo(target))
        self.assertEqual(PIDFile(self.path).read(), os.getpid())
        with open(target, "w") as f:
            f.write("2147483646\n")
        self.assertTrue(self.pidfile.moveTo(target))
        self.assertEqual(PIDFile(target).read(), os.getpid())

    def test_nothingHeldNothingMoved(self) -> None:
        self.assertFalse(PIDFile(self.path + ".other").moveTo(self.path + ".x"))


class LogReopenTests(SynchronousTestCase):
    """
    L{LogReopener}: after logrotate moved the file, the same file object
    writes to a new file at the path.
    """

    def test_writesGoToTheNewFileAfterARotation(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "cluster.log")
        logFile = open(path, "a")
        self.addCleanup(logFile.close)
        logFile.write("before\n")
        logFile.flush()
        fd = logDescriptor(path)
        self.assertEqual(fd, logFile.fileno())
        assert fd is not None
        os.rename(path, path + ".1")
        self.assertTrue(LogReopener(path, fd).reopen())
        logFile.write("after\n")
        logFile.flush()
        with open(path + ".1") as f:
            self.assertEqual(f.read(), "before\n")
        with open(path) as f:
            self.assertEqual(f.read().splitlines()[-1], "after")

    def test_pathThatCannotBeOpenedKeepsTheOldFile(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "cluster.log")
        logFile = open(path, "a")
        self.addCleanup(logFile.close)
        events = logged(self)
        missing = os.path.join(directory, "gone", "cluster.log")
        self.assertFalse(LogReopener(missing, logFile.fileno()).reopen())
        self.assertEqual([e["path"] for e in events if e["log_level"].name == "error"],
                         [missing])

    def test_logFileOfTwistAndTwistd(self) -> None:
        class Named:
            name = "/var/log/c.log"

        self.assertEqual(logFilePath({"logFile": Named()}), "/var/log/c.log")
        self.assertIsNone(logFilePath({"logFile": type("S", (), {"name": "<stdout>"})()}))
        self.assertEqual(logFilePath({"logfile": "/var/log/d.log"}), "/var/log/d.log")
        self.assertIsNone(logFilePath({"logfile": "-"}))
        self.assertIsNone(logFilePath(None))


class WorkerReopenTests(SynchronousTestCase):
    """
    C{IWorkerContext.onReopenLogs}: the app hears of SIGUSR1.
    """

    def test_everyCallbackRunsEvenAfterOneRaises(self) -> None:
        context = WorkerContext(3, None, Clock())  # type: ignore[arg-type]
        calls: list[str] = []
        context.onReopenLogs(lambda: calls.append("first") and 1 / 0)
        context.onReopenLogs(lambda: 1 / 0)
        context.onReopenLogs(lambda: calls.append("last"))
        events = logged(self)
        context.reopenLogs()
        self.assertEqual(calls, ["first", "last"])
        self.assertEqual([e["worker_id"] for e in events if "log_failure" in e], [3])
        self.flushLoggedErrors(ZeroDivisionError)


    def test_fakeClusterWorkerRunsWhatItsAppRegistered(self) -> None:
        from twisted_cluster.testing import FakeCluster

        cluster = FakeCluster("tests.apps.reopening.resource", workers=2)
        events = logged(self)
        cluster.workers[2].context.reopenLogs()
        self.assertEqual([e["reopened_by"] for e in events if "reopened_by" in e], [2])


class ReloadPolicyTests(SynchronousTestCase):
    """
    L{ReloadPolicy}: one roll-out once the sources settle.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.rolls: list[None] = []
        self.policy = ReloadPolicy(self.clock, lambda: self.rolls.append(None), settle=0.3)  # type: ignore[arg-type,func-returns-value]

    def test_severalSavesRollOnce(self) -> None:
        for name in ("a.py", "b.py", "a.py"):
            self.policy.changed(f"/nowhere/{name}")
            self.clock.advance(0.2)
        self.assertEqual(self.rolls, [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.rolls), 1)

    def test_onlyPythonSourcesCount(self) -> None:
        for name in ("a.pyc", ".a.py.swp", "notes.txt", "a.py~"):
            self.policy.changed(f"/nowhere/{name}")
        self.clock.advance(1)
        self.assertEqual(self.rolls, [])

    def test_staleBytecodeIsRemoved(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        source = os.path.join(directory, "app.py")
        with open(source, "w") as f:
            f.write("x = 1\n")
        cached = importlib.util.cache_from_source(source)
        os.makedirs(os.path.dirname(cached))
        with open(cached, "wb") as f:
            f.write(b"stale")
        self.policy.changed(source)
        self.assertFalse(os.path.exists(cached))

    def test_stopForgetsAPendingRoll(self) -> None:
        self.policy.changed("/nowhere/a.py")
        self.policy.stop()
        self.clock.advance(1)
        self.assertEqual(self.rolls, [])

    def test_manyChangesLogAFewNamesAndTheCount(self) -> None:
        """
        3,000 changed files log one short line: the first few names, then
        how many more; the count field keeps the whole number.
        """
        events = logged(self)
        for n in range(3000):
            self.policy.changed(f"/srv/app/m{n:04}.py")
        self.clock.advance(1)
        [event] = [e for e in events if e.get("cluster_event") == logevents.RELOAD_CHANGED]
        self.assertEqual(event["count"], 3000)
        self.assertEqual(
            event["files"],
            "/srv/app/m0000.py, /srv/app/m0001.py, /srv/app/m0002.py, "
            "/srv/app/m0003.py, /srv/app/m0004.py and 2995 more",
        )
        self.assertLess(len(formatEvent(event)), 300)
        self.assertEqual(len(self.rolls), 1)

    def test_controlCharactersInANameAreEscaped(self) -> None:
        """
        A file name with a newline (or a terminal escape) cannot forge a
        line of the master's log.
        """
        events = logged(self)
        self.policy.changed("/srv/app/x.py\n2026-01-01 [master] forged\x1b[2J.py")
        self.clock.advance(1)
        [event] = [e for e in events if e.get("cluster_event") == logevents.RELOAD_CHANGED]
        line = formatEvent(event)
        self.assertNotIn("\n", line)
        self.assertNotIn("\x1b", line)
        self.assertIn("x.py\\x0a2026-01-01", line)

    def test_appDirectoriesAreThoseOfNewlyImportedSourcesOutsideExcluded(self) -> None:
        module = type(os)("m")
        modules = {
            "old": type("M", (), {"__file__": "/srv/old/old.py"}),
            "app": type("M", (), {"__file__": "/srv/app/views.py"}),
            "lib": type("M", (), {"__file__": "/usr/lib/python3/site-packages/x.py"}),
            "ext": type("M", (), {"__file__": "/srv/app/fast.so"}),
            "builtin": module,
        }
        self.assertEqual(
            appDirectories(modules, ["old"], excluded=["/usr/lib/python3/"]),
            ["/srv/app"],
        )
