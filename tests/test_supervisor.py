"""
Unit tests of the supervisor's restart decisions: crashes are restarted
with growing delays, a worker that cannot start stops the master.
"""

from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.test_supervision import Harness
from twisted_cluster import logevents
from twisted_cluster._supervision.backoff import Backoff, CrashGuard
from twisted_cluster._supervision.rollout import RollingRestart
from twisted_cluster._supervision.startfailure import StartFailure


class CrashRestartTests(SynchronousTestCase):
    def test_workerThatCrashedWhileServingIsReplacedAtOnce(self) -> None:
        """
        A worker that had been ready and exits is serving capacity lost:
        its slot restarts with no delay, whatever the start-up backoff.
        """
        h = Harness(self, workers=1, backoff=Backoff(initial=1, factor=2))
        [first] = h.startAll()
        first.exit(1)
        h.clock.advance(0)
        self.assertEqual(len(h.spawned), 2)
        self.assertEqual(h.spawned[1].workerId, first.workerId)
        self.assertEqual(h.supervisor.restarts["crash"], 1)
        [event] = h.restarts()
        self.assertEqual(event["delay"], 0)

    def test_workerThatCannotStartWaitsLongerAndLonger(self) -> None:
        h = Harness(self, workers=2, backoff=Backoff(initial=1, factor=2))
        first, second = h.startAll()
        first.exit(1)  # crashed while serving: restarted at once
        h.clock.advance(0)
        delays = []
        for _ in range(3):
            process = h.spawned[-1]
            process.exit(1)  # before it was ready
            before = h.clock.seconds()
            count = len(h.spawned)
            while len(h.spawned) == count:
                h.clock.advance(0.25)
            delays.append(h.clock.seconds() - before)
        self.assertEqual(delays, [1, 2, 4])

    def test_aReadyWorkerStartsTheStartupBackoffOver(self) -> None:
        h = Harness(self, workers=1, backoff=Backoff(initial=1, factor=2))
        h.supervisor.start()
        h.spawned[-1].exit(1)
        h.clock.advance(1)
        h.spawned[-1].exit(1)
        h.clock.advance(2)
        h.ready(h.spawned[-1])
        h.spawned[-1].exit(1)  # a crash: at once
        h.clock.advance(0)
        h.spawned[-1].exit(1)  # the next start-up fails: the first delay again
        h.clock.advance(0.99)
        self.assertEqual(len(h.spawned), 4)
        h.clock.advance(0.01)
        self.assertEqual(len(h.spawned), 5)

    def test_poisonRequestEverySecondNeverDelaysARestart(self) -> None:
        """
        One request a second that kills the worker serving it, over two
        workers for two minutes: every restart is immediate, so one worker
        is always ready (before, both slots reached 12.8-25.6 s delays).
        """
        h = Harness(self, workers=2)
        h.startAll()
        for second in range(120):
            h.clock.advance(1)
            ready = h.supervisor.ready()
            victim = ready[second % len(ready)]  # round-robin brings it
            victim.exit(1)
            h.clock.advance(0)
            replacement = h.spawned[-1]
            self.assertEqual(replacement.workerId, victim.workerId)
            self.assertEqual(len(h.supervisor.ready()), 1)
            h.clock.advance(0.3)  # the app loads
            h.ready(replacement)
        delays = {e["delay"] for e in h.restarts()}
        self.assertEqual(delays, {0})

    def test_crashLoopIsBackedOffPastTheLimit(self) -> None:
        """
        A slot that crashes more than C{limit} times within the window
        waits C{initial}, doubling, up to C{maximum}, while another worker
        serves.
        """
        guard = CrashGuard(window=60, limit=3, initial=1, maximum=4)
        h = Harness(self, workers=2, crashGuard=guard)
        h.startAll()
        delays = []
        for _ in range(6):
            h.clock.advance(1)
            [process] = [p for p in h.supervisor.ready() if p.workerId == 1]
            process.exit(1)
            delays.append(h.restarts()[-1]["delay"])
            h.clock.advance(delays[-1])
            h.ready(h.spawned[-1])
        self.assertEqual(delays, [0, 0, 0, 1, 2, 4])

    def test_crashLoopIsNotDelayedWhileNoOtherWorkerIsReady(self) -> None:
        guard = CrashGuard(window=60, limit=1, initial=1, maximum=4)
        h = Harness(self, workers=1, crashGuard=guard)
        h.startAll()
        for _ in range(5):
            h.clock.advance(1)
            h.spawned[-1].exit(1)
            h.clock.advance(0)
            h.ready(h.spawned[-1])
        self.assertEqual({e["delay"] for e in h.restarts()}, {0})

    def test_restartIsLoggedWithIdPidAndCause(self) -> None:
        h = Harness(self, workers=1)
        [first] = h.startAll()
        first.exit(9)
        [event] = h.restarts()
        self.assertEqual((event["worker_id"], event["worker_pid"]), (1, first.pid))
        self.assertEqual(event["cause"], "crash")


class StartupFailureTests(SynchronousTestCase):
    def test_appErrorBeforeAnyReadyWorkerIsFatalAtOnce(self) -> None:
        h = Harness(self, workers=3)
        h.supervisor.start()
        failing = h.spawned[0]
        failing.appError = "cannot load app 'x': ValueError: no"
        failing.exit(3)
        self.assertEqual(h.fatal, ["cannot load app 'x': ValueError: no"])
        h.clock.advance(60)
        self.assertEqual(len(h.spawned), 3, "no worker is restarted after a fatal error")

    def test_theSameErrorIsLoggedOnce(self) -> None:
        h = Harness(self, workers=2, backoff=Backoff(initial=1))
        h.startAll()  # the cluster ran: app errors are retried now
        for process in list(h.spawned):
            process.exit(1)
        h.clock.advance(1)
        for process in h.spawned[2:]:
            process.appError = "cannot load app 'x': boom"
            process.exit(3)
        self.assertEqual(len(h.logged(logevents.WORKER_APP_ERROR)), 1)
        self.assertEqual(h.fatal, [])

    def test_workersThatNeverGetReadyStopTheMasterAfterAFewTries(self) -> None:
        h = Harness(self, workers=1, backoff=Backoff(initial=1, maximum=1))
        h.supervisor.start()
        for _ in range(4):
            h.spawned[-1].exit(1)
            self.assertEqual(h.fatal, [])
            h.clock.advance(1)
        h.spawned[-1].exit(1)
        self.assertEqual(len(h.fatal), 1)
        self.assertIn("5 worker start-ups in a row failed", h.fatal[0])

    def test_aSlotThatKeepsFailingDoesNotStopHealthyWorkers(self) -> None:
        """
        After the cluster ran, one slot failing to start again and again
        keeps being retried while other workers serve: the master does not
        kill them and their requests.
        """
        h = Harness(self, workers=2, backoff=Backoff(initial=1, maximum=1))
        first, second = h.startAll()
        first.exit(1)
        for _ in range(6):
            h.clock.advance(1)
            h.spawned[-1].appError = "cannot load app 'x': boom"
            h.spawned[-1].exit(3)
        self.assertEqual(h.fatal, [])
        self.assertEqual(second.signals, [])
        self.assertTrue(h.logged(logevents.WORKER_START_FAILING))
        h.clock.advance(1)
        self.assertEqual(len(h.spawned), 9, "the slot is still being retried")

    def test_workerNotReadyInTimeIsTerminated(self) -> None:
        h = Harness(self, workers=1, startTimeout=5, killTimeout=2)
        h.supervisor.start()
        [process] = h.spawned
        h.clock.advance(5)
        self.assertEqual(process.signals, ["TERM"])
        h.clock.advance(2)
        self.assertEqual(process.signals, ["TERM", "KILL"])


class StartTimeoutReasonTests(SynchronousTestCase):
    def test_workersKilledForTheStartTimeoutSayTheTimeout(self) -> None:
        """
        When start-ups fail because workers were not ready within
        C{--start-timeout}, the fatal reason names the timeout rather than
        an exit.
        """
        h = Harness(self, workers=1, startTimeout=5, killTimeout=2,
                    backoff=Backoff(initial=1, maximum=1))
        h.supervisor.start()
        for attempt in range(5):
            h.clock.advance(5)
            process = h.spawned[-1]
            self.assertEqual(process.signals, ["TERM"])
            process.exit(-15)
            h.clock.advance(1)
        self.assertEqual(
            h.fatal,
            ["5 worker start-ups in a row failed: worker not ready within "
             "--start-timeout 5s"],
        )

    def test_workersThatExitBeforeTheTimeoutSayTheyExited(self) -> None:
        h = Harness(self, workers=1, startTimeout=5, backoff=Backoff(initial=1, maximum=1))
        h.supervisor.start()
        for attempt in range(5):
            h.spawned[-1].exit(1)
            h.clock.advance(1)
        self.assertEqual(
            h.fatal,
            ["5 worker start-ups in a row failed: worker exited before it was ready"],
        )


class CountWordingTests(SynchronousTestCase):
    """
    Log lines with a count read right for one worker as for many.
    """

    def messages(self, h: Harness, *keys: str) -> list[str]:
        return [formatEvent(e) for e in h.events if e.get("cluster_event") in keys]

    def test_removingDownToOneWorker(self) -> None:
        h = Harness(self, workers=2)
        w1, w2 = h.startAll()
        h.supervisor.removeWorker()
        self.assertEqual(
            self.messages(h, logevents.WORKER_REMOVED),
            [f"worker 2 pid {w2.pid} removed: draining it; workers left: 1"],
        )

    def test_addingAWorker(self) -> None:
        h = Harness(self, workers=1)
        h.startAll()
        h.supervisor.addWorker()
        self.assertEqual(
            self.messages(h, logevents.WORKER_ADDED),
            [f"worker 2 pid {h.spawned[-1].pid} added; workers: 2"],
        )

    def test_rollingRestartOfOneWorker(self) -> None:
        h = Harness(self, workers=1)
        h.startAll()
        RollingRestart(h.supervisor).request()
        h.ready(h.spawned[-1])
        messages = self.messages(h, logevents.ROLLOUT_STARTED, logevents.ROLLOUT_DONE)
        self.assertEqual(
            [messages[0], messages[-1]],
            ["rolling restart: replacing workers one at a time; to replace: 1",
             "rolling restart done; workers replaced: 1"],
        )


def _traceback(source: str, filename: str) -> str:
    """
    The traceback the worker sends when loading C{source} raises, as
    L{twisted_cluster.apploading} formats it.
    """
    from twisted_cluster.apploading import _userTraceback

    try:
        code = compile(source, filename, "exec")
        exec(code, {})
    except Exception as e:
        return _userTraceback(e)
    raise AssertionError("the source did not raise")


class StartFailureTests(SynchronousTestCase):
    def test_lastFrameOfARuntimeError(self) -> None:
        details = _traceback("x = 1\n\ndef f():\n    return y\n\nf()\n", "/srv/app/deployed.py")
        failure = StartFailure.fromWorker("exit 3", "cannot load app: NameError", details)
        self.assertEqual(
            (failure.file, failure.line, failure.exception),
            ("/srv/app/deployed.py", 4, "NameError: name 'y' is not defined"),
        )

    def test_syntaxErrorNamesTheLineOfTheError(self) -> None:
        details = _traceback("a = 1\ndef (:\n", "/srv/app/deployed.py")
        failure = StartFailure.fromWorker("exit 3", "cannot load app", details)
        self.assertEqual((failure.file, failure.line), ("/srv/app/deployed.py", 2))
        self.assertEqual(failure.exception, "SyntaxError: invalid syntax")

    def test_noTracebackNoLocation(self) -> None:
        failure = StartFailure.fromWorker("signal KILL", None, "")
        self.assertEqual(
            failure.fields(),
            {"how": "signal KILL", "error": None, "error_file": None,
             "error_line": None, "exception": None},
        )


class AbortedRolloutTests(SynchronousTestCase):
    def test_abortSaysWhereTheNewWorkerFailed(self) -> None:
        """
        The abort line carries the file, line and exception of the new
        worker's error as fields (before: one line with none of them).
        """
        h = Harness(self, workers=2)
        h.startAll()
        done = RollingRestart(h.supervisor).request()
        new = h.spawned[-1]
        new.appError = "cannot load app 'deployed.resource': NameError: name 'y' is not defined"
        new.appErrorDetails = _traceback("def f():\n    return y\nf()\n", "/srv/deployed.py")
        new.exit(3)
        self.assertFalse(self.successResultOf(done))
        [aborted] = h.logged(logevents.ROLLOUT_ABORTED)
        self.assertEqual(
            {k: aborted[k] for k in ("worker_id", "how", "error_file", "error_line", "exception")},
            {"worker_id": 1, "how": "exit 3", "error_file": "/srv/deployed.py",
             "error_line": 2, "exception": "NameError: name 'y' is not defined"},
        )
        self.assertEqual(aborted["error"], new.appError)
        self.assertIn("at /srv/deployed.py:2: NameError", formatEvent(aborted))


class StartConcurrencyTests(SynchronousTestCase):
    """
    At most C{startConcurrency} workers start at a time: on two cores,
    with sixteen started together the first was ready after 2.2-3.4 s; two
    at a time, after 0.5-0.6 s, and all of them no later.
    """

    def test_workersPastTheConcurrencyWaitTheirTurn(self) -> None:
        h = Harness(self, workers=5, startConcurrency=2)
        h.supervisor.start()
        self.assertEqual([p.workerId for p in h.spawned], [1, 2])
        self.assertEqual(len(h.logged(logevents.WORKER_QUEUED)), 3)
        h.ready(h.spawned[0])
        self.assertEqual([p.workerId for p in h.spawned], [1, 2, 3])
        h.spawned[1].exit(1)  # a failed start-up frees a turn too
        self.assertEqual([p.workerId for p in h.spawned], [1, 2, 3, 4])
        for process in h.spawned[2:]:
            h.ready(process)
        self.assertEqual([p.workerId for p in h.spawned], [1, 2, 3, 4, 5])
        self.assertEqual(sorted(h.supervisor.slotPids()), [1, 2, 3, 4, 5])

    def test_stopForgetsTheQueue(self) -> None:
        h = Harness(self, workers=3, startConcurrency=1)
        h.supervisor.start()
        stopped = h.supervisor.stop()
        h.spawned[0].exit(0)
        self.successResultOf(stopped)
        self.assertEqual(len(h.spawned), 1)

    def test_removedSlotLeavesTheQueue(self) -> None:
        h = Harness(self, workers=3, startConcurrency=1)
        h.supervisor.start()
        self.assertEqual(h.supervisor.removeWorker(), 3)
        h.ready(h.spawned[0])
        h.ready(h.spawned[1])
        self.assertEqual([p.workerId for p in h.spawned], [1, 2])
