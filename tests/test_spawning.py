"""
Unit tests of spawns that fail: a fork refused (C{EAGAIN} under
C{RLIMIT_NPROC}), no descriptor left for a worker's channels (C{EMFILE}).
Real L{WorkerProcess} objects and a real L{Supervisor} over a fake reactor
whose C{spawnProcess} raises on demand; no process is started.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, Callable

from twisted.internet.error import ProcessTerminated
from twisted.internet.interfaces import IReactorProcess
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.fakes import RecordingHandoffObserver
from twisted_cluster import logevents
from twisted_cluster._contract import STACKS_FD
from twisted_cluster._contract.workerconfig import WorkerConfig
from twisted_cluster._master.config import ClusterConfig
from twisted_cluster._supervision import process as processModule
from twisted_cluster._supervision.backoff import Backoff
from twisted_cluster._supervision.process import (
    KILL,
    READY,
    STOPPED,
    SpawnFailed,
    WorkerProcess,
)
from twisted_cluster._supervision.rollout import RollingRestart
from twisted_cluster._supervision.supervisor import Supervisor


class _Reader:
    """
    One pipe of a process transport: whether the reactor reads it.
    """

    reading = True

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True


class _Transport:
    """
    The process transport of a spawn that worked: records signals, and has
    the stacks pipe as Twisted's process transport has its pipes.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []
        self.pipes = {STACKS_FD: _Reader()}

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


@implementer(IReactorProcess)
class SpawnReactor(MemoryReactorClock):
    """
    A memory reactor and clock whose C{spawnProcess} raises C{error} while
    C{failing} is above zero (counting down), and otherwise records the
    process protocol by pid so that the test can end the process.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failing = 0
        self.error = OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        self.attempts = 0
        self.protocols: dict[int, Any] = {}
        self.transports: dict[int, _Transport] = {}
        self._nextPid = 5000

    def spawnProcess(
        self,
        processProtocol: Any,
        executable: Any,
        args: Any = (),
        env: Any = None,
        path: Any = None,
        uid: Any = None,
        gid: Any = None,
        usePTY: bool = False,
        childFDs: Any = None,
    ) -> _Transport:
        self.attempts += 1
        if self.failing > 0:
            self.failing -= 1
            raise self.error
        self._nextPid += 1
        transport = self.transports[self._nextPid] = _Transport(self._nextPid)
        self.protocols[self._nextPid] = processProtocol
        return transport

    def exit(self, pid: int, code: int = 1) -> None:
        self.protocols[pid].processEnded(Failure(ProcessTerminated(exitCode=code)))


def openDescriptors() -> set[tuple[str, str]]:
    """
    This process's open descriptors, each with what it names (a socket's
    inode, a file's path): a leaked one shows as new even if it took the
    number of one that other tests' clean-up closed meanwhile.
    """
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:
            pass  # the descriptor listdir itself used
    return found


class Cluster:
    """
    A supervisor of real worker process objects over a L{SpawnReactor}.
    """

    def __init__(self, testCase: SynchronousTestCase, workers: int = 2, **config: Any):
        self.reactor = SpawnReactor()
        verifyObject(IReactorProcess, self.reactor)
        self.fatal: list[str] = []
        self.made: list[WorkerProcess] = []
        self.supervisor = Supervisor(
            self.reactor, ClusterConfig(workers=workers, startConcurrency=64, **config),
            self._make,
            self.fatal.append,
        )
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        testCase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def _make(self, workerId: int, onReady: Callable[[Any], None]) -> WorkerProcess:
        process = WorkerProcess(
            self.reactor, workerId, WorkerConfig(workerId, None, (), ()), sys.executable,
            onReady=onReady, handoffObserver=RecordingHandoffObserver(), listWorkers=list,
        )
        self.made.append(process)
        return process

    def ready(self, process: WorkerProcess) -> None:
        assert process.control is not None
        process.control.ready(pid=process.pid)

    def startAll(self) -> list[WorkerProcess]:
        self.supervisor.start()
        for process in self.made:
            self.ready(process)
        return list(self.made)

    def logged(self, key: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("cluster_event") == key]


class WorkerProcessSpawnTests(SynchronousTestCase):
    def process(self, reactor: SpawnReactor) -> WorkerProcess:
        return WorkerProcess(
            reactor, 1, WorkerConfig(1, None, (), ()), sys.executable,
            onReady=lambda p: None, handoffObserver=RecordingHandoffObserver(),
            listWorkers=list,
        )

    def test_forkRefusedEndsTheProcessAndLeaksNoDescriptor(self) -> None:
        reactor = SpawnReactor()
        reactor.failing = 1
        process = self.process(reactor)
        before = openDescriptors()
        process.spawn()
        self.assertEqual(openDescriptors() - before, set())
        self.assertEqual((process.state, process.pid), (STOPPED, None))
        reason = self.failureResultOf(process.ended, SpawnFailed)
        self.assertEqual(
            process.exitDescription(reason),
            "spawn failed: EAGAIN: Resource temporarily unavailable",
        )
        process.stop(KILL)  # nothing to signal, and no error

    def test_noDescriptorForTheHandoffChannelLeaksTheControlChannel(self) -> None:
        """
        C{EMFILE} on the second socketpair: the first one is closed.
        """
        def socketpair() -> Any:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

        self.patch(processModule, "socketpair", socketpair)
        reactor = SpawnReactor()
        process = self.process(reactor)
        before = openDescriptors()
        process.spawn()
        self.assertEqual(openDescriptors() - before, set())
        self.assertEqual(reactor.attempts, 0)
        reason = self.failureResultOf(process.ended, SpawnFailed)
        self.assertEqual(str(reason.value), "EMFILE: Too many open files")

    def test_controlChannelThatCannotBeOpenedKillsTheWorker(self) -> None:
        """
        A child forked whose control channel the master cannot adopt
        (C{EMFILE} on the dup) is killed, and ends like a worker that
        exited before it was ready; the master keeps no descriptor of it.
        """
        reactor = SpawnReactor()

        def adoptStreamConnection(*args: Any) -> None:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

        reactor.adoptStreamConnection = adoptStreamConnection  # type: ignore[method-assign]
        process = self.process(reactor)
        before = openDescriptors()
        process.spawn()
        self.assertEqual(openDescriptors() - before, set())
        assert process.pid is not None
        self.assertEqual(reactor.transports[process.pid].signals, ["KILL"])
        self.assertIsNone(process.control, "no control channel to call")
        self.assertNoResult(process.ended)
        reactor.exit(process.pid, -9)
        self.assertEqual(process.state, STOPPED)
        self.failureResultOf(process.ended, ProcessTerminated)


class SupervisorSpawnFailureTests(SynchronousTestCase):
    def test_failedForkDuringARestartIsRetriedWithBackoff(self) -> None:
        """
        Before, the slot stayed "starting" with pid None for good; now each
        refused fork is a failed start-up: counted, backed off, retried
        until one works.
        """
        c = Cluster(self, workers=2, backoff=Backoff(initial=1, factor=2))
        first, second = c.startAll()
        c.reactor.failing = 3
        assert second.pid is not None
        c.reactor.exit(second.pid)
        c.reactor.advance(0)  # crashed while serving: at once, refused
        self.assertEqual(c.supervisor.slotPids()[2], None)
        self.assertEqual(len(c.logged(logevents.WORKER_SPAWN_FAILED)), 1)
        self.assertEqual(c.reactor.attempts, 3)
        for delay, attempts in ((1, 4), (2, 5), (4, 6)):
            c.reactor.advance(delay - 0.01)
            self.assertEqual(c.reactor.attempts, attempts - 1)
            c.reactor.advance(0.01)
            self.assertEqual(c.reactor.attempts, attempts)
        new = c.supervisor.slotPids()[2]
        self.assertIsNotNone(new)
        self.assertEqual(c.supervisor.restarts["startup"], 3)
        c.ready(c.made[-1])
        self.assertEqual([p.state for p in c.supervisor.processes()], [READY, READY])
        self.assertEqual(c.fatal, [])

    def test_forksThatKeepFailingWithNoWorkerServingAreFatal(self) -> None:
        c = Cluster(self, workers=3, backoff=Backoff(initial=1, maximum=1))
        c.reactor.failing = 100
        c.supervisor.start()
        for _ in range(5):
            c.reactor.advance(1)
        self.assertEqual(
            c.fatal,
            ["5 worker start-ups in a row failed: cannot start a worker process: "
             "EAGAIN: Resource temporarily unavailable"],
        )
        attempts = c.reactor.attempts
        c.reactor.advance(60)
        self.assertEqual(c.reactor.attempts, attempts, "no fork after the fatal error")

    def test_stopFinishesWhileASlotWaitsForAFork(self) -> None:
        """
        SIGTERM with a slot whose fork failed: the stop completes once the
        live worker exits; nobody waits for a process that never was.
        """
        c = Cluster(self, workers=2, backoff=Backoff(initial=5))
        first, second = c.startAll()
        c.reactor.failing = 2
        assert second.pid is not None and first.pid is not None
        c.reactor.exit(second.pid)
        c.reactor.advance(5)
        attempts = c.reactor.attempts
        stopped = c.supervisor.stop()
        c.reactor.exit(first.pid, 0)
        self.successResultOf(stopped)
        c.reactor.advance(60)
        self.assertEqual(c.logged(logevents.WORKER_KILLED), [])
        self.assertEqual(c.reactor.attempts, attempts, "no retry once stopping")

    def test_rolloutWhoseForkFailsIsAbortedAndSaysWhy(self) -> None:
        c = Cluster(self, workers=2)
        c.startAll()
        c.reactor.failing = 1
        done = RollingRestart(c.supervisor).request()
        self.assertFalse(self.successResultOf(done))
        [aborted] = c.logged(logevents.ROLLOUT_ABORTED)
        self.assertEqual(aborted["worker_id"], 1)
        self.assertEqual(aborted["how"], "spawn failed: EAGAIN: Resource temporarily unavailable")
        self.assertEqual(len(c.supervisor.ready()), 2, "the old workers keep serving")
