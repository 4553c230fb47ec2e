"""
Unit tests of the life cycle as the app sees it: the supervisor's observers
hear each worker's start, readiness, drain and exit with the right cause;
the app's master-side events and worker-side hooks are called, and their
failures logged without breaking anything; a plain protocol that says
nothing is drained once quiet; the Drain command carries the deadline and
tolerates either side being older.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ProcessTerminated
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.fakes import FakeProcess
from tests.test_supervision import Harness
from twisted_cluster import (
    AppLoadError,
    ClusterApp,
    IMasterEvents,
    IWorkerHooks,
    MasterEvents,
    WorkerEvent,
    WorkerHooks,
    logevents,
)
from twisted_cluster._contract import commands
from twisted_cluster._contract.commands import PingFigures
from twisted_cluster._master.masterevents import AppMasterEvents, workerEvent
from twisted_cluster._supervision.causes import ExitCause, RestartCause
from twisted_cluster._supervision.interfaces import IWorkerObserver, WorkerObserver
from twisted_cluster._supervision.recycle import RecyclePolicy, Recycler
from twisted_cluster._supervision.rollout import RollingRestart
from twisted_cluster._worker.apphooks import AppHooks
from twisted_cluster._worker.draining import IDLE_GRACE, Drain
from twisted_cluster._worker.tracking import ConnectionTracker
from twisted_cluster.testing import FakeCluster

ADDRESS = IPv4Address("TCP", "127.0.0.1", 12345)


class Recording(WorkerObserver):
    """
    An observer that writes down what it hears, as C{(event, pid, cause)}.
    """

    def __init__(self) -> None:
        self.heard: list[tuple[str, int | None, str | None]] = []

    def workerStarted(self, process: Any) -> None:
        self.heard.append(("started", process.pid, None))

    def workerReady(self, process: Any) -> None:
        self.heard.append(("ready", process.pid, None))

    def workerDraining(self, process: Any, cause: ExitCause) -> None:
        self.heard.append(("draining", process.pid, cause.value))

    def workerExited(self, process: Any, cause: ExitCause, reason: Failure) -> None:
        self.heard.append(("exited", process.pid, cause.value))


def observed(testCase: SynchronousTestCase, workers: int = 1, **config: Any) -> tuple[Harness, Recording]:
    h = Harness(testCase, workers=workers, **config)
    recording = Recording()
    h.supervisor.addObserver(recording)
    return h, recording


class SupervisorObserverTests(SynchronousTestCase):
    def test_observersAreChecked(self) -> None:
        self.assertTrue(verifyObject(IWorkerObserver, WorkerObserver()))
        self.assertTrue(verifyObject(IWorkerObserver, AppMasterEvents([])))

    def test_crashIsStartedReadyExitedThenTheReplacementStarts(self) -> None:
        h, recording = observed(self)
        [first] = h.startAll()
        first.exit(1)
        h.clock.advance(0)
        second = h.spawned[-1]
        self.assertEqual(recording.heard, [
            ("started", first.pid, None), ("ready", first.pid, None),
            ("exited", first.pid, "crash"), ("started", second.pid, None),
        ])

    def test_rolloutTellsTheNewReadyBeforeTheOldDrains(self) -> None:
        h, recording = observed(self)
        [old] = h.startAll()
        RollingRestart(h.supervisor).request()
        new = h.spawned[-1]
        h.ready(new)
        old.exit(0)
        self.assertEqual(recording.heard[2:], [
            ("started", new.pid, None), ("ready", new.pid, None),
            ("draining", old.pid, "rollout"), ("exited", old.pid, "rollout"),
        ])

    def test_recycledWorkerDrainsAndExitsAsRecycle(self) -> None:
        h, recording = observed(self)
        [old] = h.startAll()
        old.figures = PingFigures(served=1000)
        Recycler(h.supervisor, RecyclePolicy(maxConnections=5)).check(old)
        h.ready(h.spawned[-1])
        old.exit(0)
        self.assertEqual(recording.heard[-2:], [
            ("draining", old.pid, "recycle"), ("exited", old.pid, "recycle"),
        ])

    def test_hungWorkerDrainsAndExitsAsHang(self) -> None:
        h, recording = observed(self)
        [hung] = h.startAll()
        h.supervisor.killHung(hung)
        hung.exit(1)
        self.assertEqual(recording.heard[2:4], [
            ("draining", hung.pid, "hang"), ("exited", hung.pid, "hang"),
        ])

    def test_removedWorkerDrainsAndExitsAsRemoved(self) -> None:
        h, recording = observed(self, workers=2)
        one, two = h.startAll()
        h.supervisor.removeWorker()
        two.exit(0)
        self.assertEqual(recording.heard[-2:], [
            ("draining", two.pid, "removed"), ("exited", two.pid, "removed"),
        ])

    def test_stoppedWorkerDrainsAndExitsAsStopped(self) -> None:
        h, recording = observed(self)
        [one] = h.startAll()
        h.supervisor.stop()
        one.exit(0)
        self.assertEqual(recording.heard[-2:], [
            ("draining", one.pid, "stopped"), ("exited", one.pid, "stopped"),
        ])

    def test_workerThatNeverWasReadyExitsAsStartupWithoutDraining(self) -> None:
        h, recording = observed(self)
        h.supervisor.start()
        [starting] = h.spawned
        starting.exit(3)
        self.assertEqual(recording.heard, [
            ("started", starting.pid, None), ("exited", starting.pid, "startup"),
        ])

    def test_failingObserverIsLoggedAndTheOthersAreToldAllTheSame(self) -> None:
        class Broken(WorkerObserver):
            def workerReady(self, process: Any) -> None:
                raise RuntimeError("oops")

        h = Harness(self, workers=1)
        recording = Recording()
        h.supervisor.addObserver(Broken())
        h.supervisor.addObserver(recording)
        [one] = h.startAll()
        self.assertIn(("ready", one.pid, None), recording.heard)
        [event] = h.logged(logevents.OBSERVER_FAILED)
        self.assertEqual((event["worker_id"], event["worker_pid"]), (1, one.pid))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(h.supervisor.ready(), [one])


class MasterEventsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def test_baseProvidesTheInterface(self) -> None:
        self.assertTrue(verifyObject(IMasterEvents, MasterEvents()))
        self.assertTrue(verifyObject(IWorkerHooks, WorkerHooks()))

    def test_exitCarriesTheCauseAndTheSignal(self) -> None:
        process = FakeProcess(2, pid=42)
        killed = Failure(ProcessTerminated(signal=9))
        self.assertEqual(
            workerEvent(process, RestartCause.HANG, killed),
            WorkerEvent(workerId=2, pid=42, cause="hang", exitCode=None, signal="KILL"),
        )
        exited = Failure(ProcessTerminated(exitCode=3))
        self.assertEqual(workerEvent(process, RestartCause.CRASH, exited).exitCode, 3)

    def test_appHearsEveryEventWithAWorkerEvent(self) -> None:
        heard: list[Any] = []

        class App(MasterEvents):
            def workerReady(self, event: WorkerEvent) -> None:
                heard.append(("ready", event))

            async def workerExited(self, event: WorkerEvent) -> None:
                heard.append(("exited", event))

            def clusterReady(self) -> None:
                heard.append("cluster ready")

        events = AppMasterEvents([App()])
        process = FakeProcess(1, pid=7)
        events.workerReady(process)
        events.workerReady(FakeProcess(2, pid=8))
        events.workerExited(process, RestartCause.CRASH, Failure(ProcessTerminated(1)))
        self.assertEqual(heard, [
            ("ready", WorkerEvent(workerId=1, pid=7)),
            "cluster ready",
            ("ready", WorkerEvent(workerId=2, pid=8)),
            ("exited", WorkerEvent(workerId=1, pid=7, cause="crash", exitCode=1)),
        ])

    def test_failingHooksAreLoggedWithTheWorker(self) -> None:
        class App(MasterEvents):
            def workerStarted(self, event: WorkerEvent) -> None:
                raise ValueError("sync")

            def workerReady(self, event: WorkerEvent) -> Deferred[None]:
                return fail(KeyError("async"))

        events = AppMasterEvents([App()])
        process = FakeProcess(3, pid=9)
        events.workerStarted(process)
        events.workerReady(process)
        failed = [e for e in self.events if e.get("cluster_event") == logevents.HOOK_FAILED]
        self.assertEqual(
            [(e["hook"], e["worker_id"], e["worker_pid"]) for e in failed],
            [("workerStarted", 3, 9), ("workerReady", 3, 9)],
        )
        self.flushLoggedErrors(ValueError, KeyError)


class WorkerHooksTests(SynchronousTestCase):
    def test_startedWaitsForEveryHook(self) -> None:
        waiting: Deferred[None] = Deferred()

        class Pool(WorkerHooks):
            def workerStarted(self) -> Deferred[None]:
                return waiting

        started = AppHooks(1, [Pool(), WorkerHooks()]).started()
        self.assertNoResult(started)
        waiting.callback(None)
        self.successResultOf(started)

    def test_startedFailsWithTheHooksFailure(self) -> None:
        class Broken(WorkerHooks):
            async def workerStarted(self) -> None:
                raise OSError("no database")

        self.failureResultOf(AppHooks(1, [Broken()]).started(), OSError)

    def test_drainingIsNoneWhenNoHookDeclaresADrain(self) -> None:
        self.assertIsNone(AppHooks(1, [WorkerHooks()]).draining(10.0))

    def test_drainingIsGivenTheDeadlineAndLogsAFailure(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        deadlines: list[float] = []

        class Goodbye(WorkerHooks):
            def workerDraining(self, deadline: float) -> None:
                deadlines.append(deadline)

        class Broken(WorkerHooks):
            def workerDraining(self, deadline: float) -> None:
                raise RuntimeError("oops")

        drained = AppHooks(4, [Goodbye(), Broken()]).draining(12.5)
        assert drained is not None
        self.successResultOf(drained)
        self.assertEqual(deadlines, [12.5])
        [event] = [e for e in events if e.get("cluster_event") == logevents.HOOK_FAILED]
        self.assertEqual((event["worker_id"], event["hook"]), (4, "workerDraining"))
        self.flushLoggedErrors(RuntimeError)


class Quiet(Protocol):
    """
    A plain protocol: it says nothing of whether it is idle.
    """


class PlainDrainTests(SynchronousTestCase):
    def connect(self, tracker: ConnectionTracker) -> tuple[Any, StringTransport]:
        protocol = tracker.buildProtocol(ADDRESS)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_plainConnectionIsClosedOnceQuietForTheGrace(self) -> None:
        clock = Clock()
        tracker = ConnectionTracker(Factory.forProtocol(Quiet))
        silent, silentTransport = self.connect(tracker)
        chatty, chattyTransport = self.connect(tracker)
        tracker.watchActivity(clock)
        clock.advance(1.5)
        chatty.dataReceived(b"hello")
        clock.advance(0.5)
        self.assertEqual(tracker.closeIdle(True, quietFor=2.0), 1)
        self.assertTrue(silentTransport.disconnecting)
        self.assertFalse(chattyTransport.disconnecting)
        clock.advance(1.5)
        self.assertEqual(tracker.closeIdle(True, quietFor=2.0), 0)
        self.assertTrue(chattyTransport.disconnecting)

    def test_plainConnectionStaysWithoutQuietFor(self) -> None:
        clock = Clock()
        tracker = ConnectionTracker(Factory.forProtocol(Quiet))
        _, transport = self.connect(tracker)
        tracker.watchActivity(clock)
        clock.advance(10)
        self.assertEqual(tracker.closeIdle(True), 1)
        self.assertFalse(transport.disconnecting)

    def test_stopCallsTheAppsStopFactory(self) -> None:
        stopped: list[bool] = []

        class App(Factory):
            protocol = Quiet

            def stopFactory(self) -> None:
                stopped.append(True)

        tracker = ConnectionTracker(App())
        tracker.doStart()
        tracker.doStop()
        self.assertEqual(stopped, [True])


class OldDrain(amp.Command):
    """
    L{commands.Drain} as workers and masters of older code declare it.
    """

    commandName = commands.Drain.commandName
    arguments: list[tuple[bytes, amp.Argument]] = []
    response: list[tuple[bytes, amp.Argument]] = []


class DrainCommandTests(SynchronousTestCase):
    def test_deadlineTravels(self) -> None:
        box = commands.Drain.makeArguments({"within": 6.0}, None)
        self.assertEqual(commands.Drain.parseArguments(box, None), {"within": 6.0})

    def test_olderMasterSendsNoDeadline(self) -> None:
        box = OldDrain.makeArguments({}, None)
        self.assertEqual(commands.Drain.parseArguments(box, None), {"within": None})

    def test_olderWorkerIgnoresTheDeadline(self) -> None:
        box = commands.Drain.makeArguments({"within": 6.0}, None)
        self.assertEqual(OldDrain.parseArguments(box, None), {})


class FakeClusterLifeTests(SynchronousTestCase):
    def test_fakeClusterTellsHooksAndMasterEventsInOrder(self) -> None:
        heard: list[Any] = []

        class Events(MasterEvents):
            def __init__(self, master: Any) -> None:
                self.master = master

            def workerReady(self, event: WorkerEvent) -> None:
                heard.append(("ready", event.workerId))

            def workerDraining(self, event: WorkerEvent) -> None:
                heard.append(("draining", event.workerId, event.cause))

            def workerExited(self, event: WorkerEvent) -> None:
                heard.append(("exited", event.workerId, event.cause))

            def clusterReady(self) -> None:
                heard.append("cluster ready")

        class Hooks(WorkerHooks):
            def __init__(self, context: Any) -> None:
                self.context = context

            def workerStopping(self) -> None:
                heard.append(("stopping", self.context.workerId))

        app = ClusterApp(
            app=Factory.forProtocol(Protocol), workerHooks=Hooks, masterEvents=Events
        )
        cluster = FakeCluster(app, workers=1)
        self.successResultOf(cluster.drain(1, cause="removed"))
        cluster.kill(1)
        self.assertEqual(heard, [
            ("ready", 1), "cluster ready", ("draining", 1, "removed"),
            ("stopping", 1), ("exited", 1, "removed"),
        ])

    def test_fakeClusterStopsAsSigtermDoes(self) -> None:
        heard: list[Any] = []

        class Events(MasterEvents):
            def __init__(self, master: Any) -> None:
                self.master = master

            def workerDraining(self, event: WorkerEvent) -> None:
                heard.append(("draining", event.workerId, event.cause))

            def clusterStopping(self) -> None:
                heard.append("cluster stopping")

        cluster = FakeCluster(ClusterApp(app=Factory.forProtocol(Protocol), masterEvents=Events))
        self.successResultOf(cluster.stop())
        self.assertEqual(heard, [
            "cluster stopping", ("draining", 1, "stopped"), ("draining", 2, "stopped"),
        ])
        self.assertEqual((sorted(cluster.draining), cluster.workers), ([1, 2], {}))

    def test_workerHooksThatAreNoProviderFailToLoad(self) -> None:
        app = ClusterApp(app=Factory.forProtocol(Protocol), workerHooks=lambda c: 42)
        self.assertRaises(AppLoadError, FakeCluster, app)


class Counting(Protocol):
    def __init__(self) -> None:
        self.lost = False

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


class DrainObjectTests(SynchronousTestCase):
    """
    L{Drain} on a L{Clock}: when the drain of a worker's connections ends.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.tracker = ConnectionTracker(Factory.forProtocol(Counting))
        self.done: list[bool] = []

    def connect(self) -> tuple[Any, StringTransport]:
        protocol = self.tracker.buildProtocol(ADDRESS)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def drain(self, *hooks: Any, within: float = 6.0) -> Drain:
        drain = Drain(self.clock, 1, self.tracker, AppHooks(1, hooks), lambda: self.done.append(True))
        drain.start(within)
        return drain

    def close(self, protocol: Any, drain: Drain) -> None:
        protocol.connectionLost(None)
        drain.connectionClosed()

    def test_appDrainEndsTheDrainOnceItsConnectionsClose(self) -> None:
        finished: Deferred[None] = Deferred()

        class Goodbye(WorkerHooks):
            def workerDraining(self, deadline: float) -> Deferred[None]:
                return finished

        protocol, transport = self.connect()
        drain = self.drain(Goodbye())
        self.clock.advance(IDLE_GRACE + 1)
        self.assertFalse(transport.disconnecting)  # the app's to close
        finished.callback(None)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.done, [])
        self.close(protocol, drain)
        self.assertEqual(self.done, [True])

    def test_plainIdleConnectionEndsTheDrainAfterTheIdleGrace(self) -> None:
        protocol, transport = self.connect()
        drain = self.drain()
        self.clock.advance(IDLE_GRACE - 0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.close(protocol, drain)
        self.assertEqual(self.done, [True])

    def test_deadlineEndsTheDrainWhatever(self) -> None:
        protocol, transport = self.connect()
        self.drain(within=6.0)
        for _ in range(11):
            self.clock.advance(0.5)
            protocol.dataReceived(b"still talking")
        self.assertEqual(self.done, [])
        self.clock.advance(0.5)
        self.assertEqual(self.done, [True])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noConnectionAndNoAppDrainEndsAtOnce(self) -> None:
        self.drain()
        self.assertEqual(self.done, [True])
        self.assertEqual(self.clock.getDelayedCalls(), [])
