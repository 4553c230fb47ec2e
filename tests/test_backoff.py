"""
Tests for L{twisted_cluster.backoff}: restart delays and start-up verdicts.
"""

from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster.backoff import Backoff, StartupPolicy


class BackoffTests(SynchronousTestCase):
    def test_delaysDoubleUpToTheMaximum(self) -> None:
        backoff = Backoff(initial=0.5, factor=2, maximum=3)
        self.assertEqual([backoff.delay(n) for n in range(1, 6)], [0.5, 1, 2, 3, 3])

    def test_longUptimeResetsTheFailureCount(self) -> None:
        backoff = Backoff(resetAfter=10)
        self.assertEqual(backoff.failuresAfterExit(4, uptime=2), 5)
        self.assertEqual(backoff.failuresAfterExit(4, uptime=10), 1)


class StartupPolicyTests(SynchronousTestCase):
    def test_appErrorBeforeAnyWorkerWasReadyIsFatal(self) -> None:
        verdict = StartupPolicy().judge(1, everReady=False, appError="bad app")
        self.assertTrue(verdict.fatal)
        self.assertEqual(verdict.reason, "bad app")

    def test_appErrorAfterTheClusterRanIsRetried(self) -> None:
        policy = StartupPolicy(maxFailures=3)
        self.assertFalse(policy.judge(2, everReady=True, appError="bad").fatal)
        verdict = policy.judge(3, everReady=True, appError="bad")
        self.assertTrue(verdict.fatal)
        self.assertIn("3 worker start-ups in a row failed: bad", verdict.reason)

    def test_repeatedFailuresAreNotFatalWhileWorkersServe(self) -> None:
        policy = StartupPolicy(maxFailures=2)
        self.assertFalse(policy.judge(5, True, "bad", readyWorkers=1).fatal)
        self.assertTrue(policy.judge(5, True, "bad", readyWorkers=0).fatal)

    def test_repeatedEarlyExitsAreFatal(self) -> None:
        policy = StartupPolicy(maxFailures=2)
        self.assertFalse(policy.judge(1, everReady=False, appError=None).fatal)
        self.assertTrue(policy.judge(2, everReady=False, appError=None).fatal)
