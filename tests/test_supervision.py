"""
Unit tests of supervision without loss: health verdicts and the health
monitor, recycling thresholds, roll-out order, and the supervisor's
replacing and resizing, with a L{Clock} and fake worker processes.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import FakeProcess
from twisted_cluster import logevents
from twisted_cluster._contract.commands import PingFigures
from twisted_cluster._master.config import ClusterConfig
from twisted_cluster._supervision.health import (
    HUNG,
    OK,
    WAITING,
    HealthMonitor,
    HealthPolicy,
)
from twisted_cluster._supervision.process import DRAINING, STACKS_WAIT, STARTING
from twisted_cluster._supervision.recycle import MB, RecyclePolicy, Recycler
from twisted_cluster._supervision.rollout import RollingRestart, RolloutPlan
from twisted_cluster._supervision.supervisor import Supervisor


class Harness:
    """
    A supervisor over fake processes, with the master's ready hook.
    """

    def __init__(self, testCase: SynchronousTestCase, workers: int = 2, **config: Any):
        self.clock = Clock()
        self.spawned: list[FakeProcess] = []
        self.fatal: list[str] = []
        # Not the machine's CPU count: every worker starts at once unless
        # the test says otherwise.
        config.setdefault("startConcurrency", 64)
        self.supervisor = Supervisor(
            self.clock,
            ClusterConfig(workers=workers, **config),
            self._make,
            self.fatal.append,
        )
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        testCase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def _make(self, workerId: int, onReady: Callable[[Any], None]) -> FakeProcess:
        process = FakeProcess(workerId, clock=self.clock, onReady=onReady)
        self.spawned.append(process)
        return process

    def ready(self, process: FakeProcess) -> None:
        process.becomeReady()

    def startAll(self) -> list[FakeProcess]:
        """
        Start the workers and make each ready, those that wait their turn
        (C{startConcurrency}) included.
        """
        self.supervisor.start()
        while any(p.state == STARTING for p in self.spawned):
            self.ready(next(p for p in self.spawned if p.state == STARTING))
        return list(self.spawned)

    def logged(self, key: str) -> list[dict[str, Any]]:
        """
        The events logged with C{cluster_event} C{key}.
        """
        return [e for e in self.events if e.get("cluster_event") == key]

    def restarts(self) -> list[dict[str, Any]]:
        """
        The exits after which a slot restarts (they carry the C{delay}).
        """
        return [e for e in self.logged(logevents.WORKER_EXITED) if "delay" in e]


class HealthPolicyTests(SynchronousTestCase):
    policy = HealthPolicy(interval=5, timeout=10)

    def test_neverPingedIsOk(self) -> None:
        self.assertEqual(self.policy.verdict(100, None, None), OK)

    def test_answeredPingIsOk(self) -> None:
        self.assertEqual(self.policy.verdict(100, 50, 51), OK)

    def test_unansweredPingWithinTimeoutIsWaiting(self) -> None:
        self.assertEqual(self.policy.verdict(59.9, 50, 40), WAITING)

    def test_unansweredPingPastTimeoutIsHung(self) -> None:
        self.assertEqual(self.policy.verdict(60, 50, 40), HUNG)
        self.assertEqual(self.policy.verdict(60, 50, None), HUNG)


class HealthMonitorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)
        self.workers = self.h.startAll()
        self.monitor = HealthMonitor(
            self.h.clock, self.h.supervisor, HealthPolicy(interval=5, timeout=10)
        )
        self.monitor.start()
        self.addCleanup(self.monitor.stop)

    def test_readyWorkersArePingedEveryInterval(self) -> None:
        self.assertEqual([len(w.pings) for w in self.workers], [1, 1])
        for w in self.workers:
            w.pings[0].callback(PingFigures(open=1, served=2, rss=3).asAnswer())
        self.h.clock.advance(5)
        self.assertEqual([len(w.pings) for w in self.workers], [2, 2])

    def test_answerStoresFiguresAndRoundTrip(self) -> None:
        self.h.clock.advance(0.25)
        self.workers[0].pings[0].callback(PingFigures(open=4, served=40, rss=7 * MB).asAnswer())
        self.assertEqual(self.workers[0].figures, PingFigures(open=4, served=40, rss=7 * MB))
        self.assertEqual(self.workers[0].lastPing, 0.25)

    def test_slowWorkerIsNotPingedTwice(self) -> None:
        self.h.clock.advance(5)
        self.assertEqual(len(self.workers[0].pings), 1)

    def test_hungWorkerIsAbortedAfterTimeoutAndRestartedAsHang(self) -> None:
        """
        A hung worker is asked for its stacks, then SIGKILLed within
        L{STACKS_WAIT}: no SIGTERM that its blocked reactor cannot act on,
        no kill timeout waited out.
        """
        w1, w2 = self.workers
        w2.pings[0].callback(PingFigures().asAnswer())
        self.h.clock.advance(9.9)
        self.assertEqual(w1.signals, [])
        self.h.clock.advance(0.1)
        self.assertEqual(w1.signals, ["STACKS"])
        self.assertEqual(w1.state, DRAINING)
        self.h.clock.advance(STACKS_WAIT)
        self.assertEqual(w1.signals, ["STACKS", "KILL"])
        [line] = self.h.logged(logevents.WORKER_HUNG)
        self.assertEqual((line["worker_id"], line["worker_pid"]), (1, w1.pid))
        w1.exit(-9)
        self.assertEqual(self.h.supervisor.restarts["hang"], 1)
        self.h.clock.advance(1)
        self.assertEqual(self.h.supervisor.slotPids()[1], self.h.spawned[-1].pid)

    def test_anAnswerEndsAStallOfTheHandoffChannel(self) -> None:
        """
        A worker that answers a ping runs: its hand-off channel hears it
        (L{HandoffSender.alive}), so that a stall with nothing left to
        acknowledge ends.
        """
        calls: list[str] = []

        class Handoff:
            def alive(self) -> None:
                calls.append("alive")

        self.workers[0].handoff = Handoff()
        self.workers[0].pings[0].callback(PingFigures().asAnswer())
        self.assertEqual(calls, ["alive"])

    def test_answeringWorkerIsNotKilled(self) -> None:
        for _ in range(5):
            for w in self.workers:
                w.pings[-1].callback(PingFigures().asAnswer())
            self.h.clock.advance(5)
        self.h.clock.advance(9)
        self.assertEqual([w.signals for w in self.workers], [[], []])


class PingAnswerFailureTests(SynchronousTestCase):
    def test_aFailureHandlingTheAnswerIsLoggedWithTheWorker(self) -> None:
        """
        An exception in what the answer feeds (the figures' consumer) is
        logged once with the worker's id and pid, instead of surfacing as
        an unhandled error in a Deferred; the next ping still goes out.
        """
        h = Harness(self)
        workers = h.startAll()

        def broken(process: object) -> None:
            raise ValueError("the figures' consumer failed")

        monitor = HealthMonitor(
            h.clock, h.supervisor, HealthPolicy(interval=5, timeout=10), onFigures=broken
        )
        monitor.start()
        self.addCleanup(monitor.stop)
        workers[0].pings[0].callback(PingFigures().asAnswer())
        [line] = h.logged(logevents.PING_ANSWER_FAILED)
        self.assertEqual((line["worker_id"], line["worker_pid"]), (1, workers[0].pid))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        h.clock.advance(5)
        self.assertEqual(len(workers[0].pings), 2)


class RecyclePolicyTests(SynchronousTestCase):
    def test_connectionLimitIsJitteredUpToTenPercent(self) -> None:
        policy = RecyclePolicy(maxConnections=1000)
        rng = random.Random(1)
        limits = {policy.connectionLimit(rng) for _ in range(200)}
        self.assertTrue(all(1000 <= limit <= 1100 for limit in limits))
        self.assertGreater(len(limits), 20)

    def test_noLimitsNeverRecycle(self) -> None:
        policy = RecyclePolicy()
        self.assertFalse(policy.enabled)
        self.assertEqual(policy.connectionLimit(random.Random()), 0)
        self.assertIsNone(policy.reason(10**9, 10**12, 0))

    def test_connectionLimitReached(self) -> None:
        policy = RecyclePolicy(maxConnections=100)
        self.assertIsNone(policy.reason(104, 0, 105))
        self.assertEqual(policy.reason(105, 0, 105), "served 105 connections (limit 105)")

    def test_memoryLimitReached(self) -> None:
        policy = RecyclePolicy(maxMemory=64)
        self.assertIsNone(policy.reason(0, 63 * MB, 0))
        self.assertEqual(policy.reason(0, 64 * MB, 0), "uses 64 MB (limit 64 MB)")


class RecyclerTests(SynchronousTestCase):
    def test_workerPastTheLimitIsReplacedGracefully(self) -> None:
        h = Harness(self)
        w1, w2 = h.startAll()
        recycler = Recycler(h.supervisor, RecyclePolicy(maxMemory=10))
        w1.figures = PingFigures(rss=5 * MB)
        recycler.check(w1)
        self.assertEqual(len(h.spawned), 2)
        w1.figures = PingFigures(rss=11 * MB)
        recycler.check(w1)
        new = h.spawned[-1]
        self.assertEqual((new.workerId, w1.drained), (1, False))
        recycler.check(w1)  # a replacement is already starting
        self.assertEqual(len(h.spawned), 3)
        h.ready(new)
        self.assertTrue(w1.drained)
        self.assertEqual(h.supervisor.restarts["recycle"], 1)
        self.assertEqual(len(h.logged(logevents.WORKER_RECYCLING)), 1)

    def test_memoryLimitBelowAFreshWorkerTurnsMemoryRecyclingOff(self) -> None:
        """
        A limit that a worker exceeds at its first ping would recycle every
        worker forever: it is turned off, with one log line.
        """
        h = Harness(self)
        w1, w2 = h.startAll()
        recycler = Recycler(h.supervisor, RecyclePolicy(maxMemory=10))
        for process in (w1, w2, w1, w2):
            process.figures = PingFigures(rss=50 * MB)
            recycler.check(process)
        self.assertEqual(len(h.spawned), 2)
        self.assertEqual(len(h.logged(logevents.RECYCLE_MEMORY_OFF)), 1)

    def test_workerWithinTheLimitStays(self) -> None:
        h = Harness(self)
        w1, w2 = h.startAll()
        recycler = Recycler(h.supervisor, RecyclePolicy(maxConnections=100, jitter=0))
        w1.figures = PingFigures(served=99)
        recycler.check(w1)
        self.assertEqual(len(h.spawned), 2)
        w1.figures = PingFigures(served=100)
        recycler.check(w1)
        self.assertEqual(len(h.spawned), 3)


class RolloutPlanTests(SynchronousTestCase):
    def test_replacesLowestIdFirstThenNext(self) -> None:
        plan = RolloutPlan()
        plan.request({1: 11, 2: 12, 3: 13})
        self.assertEqual(plan.next({1: 11, 2: 12, 3: 13}), 1)
        plan.done(11)
        self.assertEqual(plan.next({1: 21, 2: 12, 3: 13}), 2)
        plan.done(12)
        plan.done(13)
        self.assertIsNone(plan.next({1: 21, 2: 22, 3: 23}))
        self.assertFalse(plan.active)

    def test_processRestartedSinceTheRequestIsSkipped(self) -> None:
        plan = RolloutPlan()
        plan.request({1: 11, 2: 12})
        self.assertEqual(plan.next({1: 31, 2: 12}), 2)

    def test_slotWaitingForRestartIsSkipped(self) -> None:
        plan = RolloutPlan()
        plan.request({1: None, 2: 12})
        self.assertEqual(plan.next({1: None, 2: 12}), 2)

    def test_secondRequestRollsNewProcessesAgain(self) -> None:
        plan = RolloutPlan()
        plan.request({1: 11, 2: 12})
        plan.done(11)
        plan.request({1: 21, 2: 12})
        self.assertEqual(plan.next({1: 21, 2: 12}), 1)

    def test_abortForgetsEverything(self) -> None:
        plan = RolloutPlan()
        plan.request({1: 11, 2: 12})
        plan.abort()
        self.assertIsNone(plan.next({1: 11, 2: 12}))


class RollingRestartTests(SynchronousTestCase):
    def test_eachNewWorkerIsReadyBeforeTheOldOneDrains(self) -> None:
        h = Harness(self, workers=3)
        old = h.startAll()
        done = RollingRestart(h.supervisor).request()
        for step in range(3):
            new = h.spawned[-1]
            self.assertEqual(len(h.spawned), 4 + step)
            self.assertEqual(new.workerId, step + 1)
            self.assertFalse(old[step].drained)
            h.ready(new)
            self.assertTrue(old[step].drained)
            self.assertEqual([o.drained for o in old[step + 1 :]], [False] * (2 - step))
        self.assertTrue(self.successResultOf(done))
        self.assertEqual(h.supervisor.restarts["rollout"], 3)
        self.assertEqual(
            set(h.supervisor.slotPids().values()), {p.pid for p in h.spawned[3:]}
        )
        self.assertEqual(len(h.logged(logevents.ROLLOUT_DONE)), 1)

    def test_failingNewWorkerAbortsAndKeepsTheOldOnes(self) -> None:
        h = Harness(self, workers=2)
        w1, w2 = h.startAll()
        done = RollingRestart(h.supervisor).request()
        new = h.spawned[-1]
        new.appError = "SyntaxError: invalid syntax (app.py, line 1)"
        new.exit(3)
        self.assertFalse(self.successResultOf(done))
        self.assertEqual(h.supervisor.slotPids(), {1: w1.pid, 2: w2.pid})
        self.assertEqual((w1.drained, w2.drained), (False, False))
        self.assertEqual(len(h.spawned), 3)
        self.assertEqual(h.fatal, [])
        self.assertEqual(len(h.logged(logevents.ROLLOUT_ABORTED)), 1)
        [line] = h.logged(logevents.WORKER_REPLACEMENT_FAILED)
        self.assertEqual(line["log_level"], LogLevel.error)
        self.assertIn("SyntaxError", line["error"])

    def test_oldWorkerCrashingDuringItsReplacementLeavesTheSlotToTheNewOne(self) -> None:
        h = Harness(self, workers=1)
        [w1] = h.startAll()
        done = RollingRestart(h.supervisor).request()
        new = h.spawned[-1]
        w1.exit(1)
        h.clock.advance(60)
        self.assertEqual(len(h.spawned), 2)
        h.ready(new)
        self.assertTrue(self.successResultOf(done))
        self.assertEqual(h.supervisor.slotPids(), {1: new.pid})
        self.assertEqual(h.supervisor.restarts["crash"], 1)

    def test_slotRemovedDuringItsReplacementDoesNotAbortTheRollout(self) -> None:
        h = Harness(self, workers=2)
        w1, w2 = h.startAll()
        supervisor = h.supervisor
        done = RollingRestart(supervisor).request()
        h.ready(h.spawned[-1])
        replacement2 = h.spawned[-1]
        self.assertEqual(replacement2.workerId, 2)
        supervisor.removeWorker()
        self.assertEqual(replacement2.signals, ["TERM"])
        self.assertTrue(self.successResultOf(done))
        self.assertEqual(h.logged(logevents.ROLLOUT_ABORTED), [])

    def test_stoppingAbortsTheRollout(self) -> None:
        h = Harness(self, workers=2)
        h.startAll()
        done = RollingRestart(h.supervisor).request()
        new = h.spawned[-1]
        h.supervisor.stop()
        self.assertEqual(new.signals, ["TERM"])
        new.exit(-15)
        self.assertFalse(self.successResultOf(done))


class ResizeTests(SynchronousTestCase):
    def test_addWorkerStartsOneInTheNextSlot(self) -> None:
        h = Harness(self, workers=2)
        h.startAll()
        self.assertEqual(h.supervisor.addWorker(), 3)
        self.assertEqual(list(h.supervisor.slotPids()), [1, 2, 3])
        [line] = h.logged(logevents.WORKER_ADDED)
        self.assertEqual((line["worker_id"], line["worker_pid"]), (3, h.spawned[-1].pid))

    def test_addWorkerStopsAtMaxWorkers(self) -> None:
        h = Harness(self, workers=2, maxWorkers=3)
        h.startAll()
        self.assertEqual(h.supervisor.addWorker(), 3)
        self.assertIsNone(h.supervisor.addWorker())
        self.assertEqual(list(h.supervisor.slotPids()), [1, 2, 3])
        self.assertTrue(h.logged(logevents.ADD_REFUSED))

    def test_removeWorkerDrainsTheHighestIdWithoutKilling(self) -> None:
        h = Harness(self, workers=3, gracePeriod=30)
        w1, w2, w3 = h.startAll()
        self.assertEqual(h.supervisor.removeWorker(), 3)
        self.assertTrue(w3.drained)
        self.assertEqual(w3.signals, [])
        self.assertEqual(list(h.supervisor.slotPids()), [1, 2])
        self.assertEqual(h.supervisor.ready(), [w1, w2])
        w3.exit(0)
        h.clock.advance(60)
        self.assertEqual(len(h.spawned), 3)
        self.assertEqual(w3.signals, [])

    def test_removedWorkerOutlastingTheGracePeriodIsKilled(self) -> None:
        h = Harness(self, workers=2, gracePeriod=30)
        w1, w2 = h.startAll()
        h.supervisor.removeWorker()
        h.clock.advance(30)
        self.assertEqual(w2.signals, ["KILL"])

    def test_theLastWorkerIsNotRemoved(self) -> None:
        h = Harness(self, workers=1)
        [w1] = h.startAll()
        self.assertIsNone(h.supervisor.removeWorker())
        self.assertFalse(w1.drained)


class OptionsTests(SynchronousTestCase):
    def test_supervisionOptionsReachTheConfig(self) -> None:
        from twisted_cluster.tap import Options

        options = Options()
        options.parseOptions([
            "--workers", "2", "--health-interval", "0.5", "--health-timeout", "2",
            "--max-connections", "1000", "--max-memory", "256",
        ])
        config = options.config()
        self.assertEqual(
            (config.healthInterval, config.healthTimeout, config.maxConnections,
             config.maxMemory),
            (0.5, 2.0, 1000, 256.0),
        )

    def test_defaults(self) -> None:
        from twisted_cluster.tap import Options

        options = Options()
        options.parseOptions(["--workers", "1"])
        config = options.config()
        self.assertEqual(
            (config.healthInterval, config.healthTimeout, config.maxConnections,
             config.maxMemory),
            (5.0, 10.0, 0, 0),
        )
