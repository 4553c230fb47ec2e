"""
Unit tests of the supervisor's restart decisions: crashes are restarted
with growing delays, a worker that cannot start stops the master.
"""

from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster.backoff import Backoff
from twisted_cluster.rollout import RollingRestart
from tests.test_supervision import Harness


class CrashRestartTests(SynchronousTestCase):
    def test_crashedWorkerIsRestartedAfterTheBackoffDelay(self) -> None:
        h = Harness(self, workers=1, backoff=Backoff(initial=1, factor=2, resetAfter=100))
        [first] = h.startAll()
        first.exit(1)
        self.assertEqual(len(h.spawned), 1)
        h.clock.advance(0.99)
        self.assertEqual(len(h.spawned), 1)
        h.clock.advance(0.01)
        self.assertEqual(len(h.spawned), 2)
        self.assertEqual(h.spawned[1].workerId, first.workerId)
        self.assertEqual(h.supervisor.restarts["crash"], 1)

    def test_repeatedCrashesWaitLongerAndLonger(self) -> None:
        h = Harness(self, workers=1, backoff=Backoff(initial=1, factor=2, resetAfter=100))
        h.startAll()
        delays = []
        for _ in range(3):
            process = h.spawned[-1]
            h.ready(process)
            process.exit(1)
            before = h.clock.seconds()
            while len(h.spawned) == 1 + len(delays):
                h.clock.advance(0.25)
            delays.append(h.clock.seconds() - before)
        self.assertEqual(delays, [1, 2, 4])

    def test_workerThatRanLongStartsTheBackoffOver(self) -> None:
        h = Harness(self, workers=1, backoff=Backoff(initial=1, factor=2, resetAfter=10))
        [first] = h.startAll()
        first.exit(1)
        h.clock.advance(1)
        second = h.spawned[1]
        h.ready(second)
        h.clock.advance(60)
        second.exit(1)
        h.clock.advance(1)
        self.assertEqual(len(h.spawned), 3)

    def test_restartIsLoggedWithIdPidAndCause(self) -> None:
        h = Harness(self, workers=1)
        [first] = h.startAll()
        first.exit(9)
        [event] = h.logged("restarting in")
        self.assertEqual((event["worker_id"], event["pid"]), (1, first.pid))
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
        self.assertEqual(len(h.logged("could not load the app")), 1)
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
        self.assertTrue(h.logged("workers still serving: {serving}"))
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

    def messages(self, h: Harness, fragment: str) -> list[str]:
        return [formatEvent(e) for e in h.logged(fragment)]

    def test_removingDownToOneWorker(self) -> None:
        h = Harness(self, workers=2)
        w1, w2 = h.startAll()
        h.supervisor.removeWorker()
        self.assertEqual(
            self.messages(h, "removed"),
            [f"worker 2 pid {w2.pid} removed: draining it; workers left: 1"],
        )

    def test_addingAWorker(self) -> None:
        h = Harness(self, workers=1)
        h.startAll()
        h.supervisor.addWorker()
        self.assertEqual(
            self.messages(h, "added"),
            [f"worker 2 pid {h.spawned[-1].pid} added; workers: 2"],
        )

    def test_rollingRestartOfOneWorker(self) -> None:
        h = Harness(self, workers=1)
        h.startAll()
        RollingRestart(h.supervisor).request()
        h.ready(h.spawned[-1])
        messages = self.messages(h, "rolling restart")
        self.assertEqual(
            [messages[0], messages[-1]],
            ["rolling restart: replacing workers one at a time; to replace: 1",
             "rolling restart done; workers replaced: 1"],
        )
