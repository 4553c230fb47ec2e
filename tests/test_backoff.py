"""
Tests for L{twisted_cluster._supervision.backoff}: restart delays and start-up verdicts.
"""

from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster._supervision.backoff import Backoff, CrashGuard, StartupPolicy


class BackoffTests(SynchronousTestCase):
    def test_delaysDoubleUpToTheMaximum(self) -> None:
        backoff = Backoff(initial=0.5, factor=2, maximum=3)
        self.assertEqual([backoff.delay(n) for n in range(1, 6)], [0.5, 1, 2, 3, 3])

    def test_noFailureNoDelay(self) -> None:
        self.assertEqual(Backoff().delay(0), 0)


class CrashGuardTests(SynchronousTestCase):
    guard = CrashGuard(window=60, limit=3, initial=1, maximum=4)

    def test_crashesUpToTheLimitRestartAtOnce(self) -> None:
        self.assertEqual(self.guard.delay([10, 20, 30], now=30, othersReady=1), 0)

    def test_crashesPastTheLimitDoubleUpToTheMaximum(self) -> None:
        crashes = [1.0, 2.0, 3.0]
        delays = []
        for now in (4.0, 5.0, 6.0, 7.0):
            crashes.append(now)
            delays.append(self.guard.delay(crashes, now, othersReady=1))
        self.assertEqual(delays, [1, 2, 4, 4])

    def test_crashesOutsideTheWindowDoNotCount(self) -> None:
        crashes = [0, 1, 2, 3, 61, 62]
        self.assertEqual(self.guard.recent(crashes, now=62), [3, 61, 62])
        self.assertEqual(self.guard.delay(crashes, now=62, othersReady=1), 0)

    def test_noDelayWhileNoOtherWorkerServes(self) -> None:
        self.assertEqual(self.guard.delay([1, 2, 3, 4, 5], now=5, othersReady=0), 0)

    def test_defaultsTakeOnePoisonRequestASecondOverTwoWorkers(self) -> None:
        """
        The documented numbers: each of two slots crashing every two
        seconds (30 a minute) is never delayed.
        """
        guard = CrashGuard()
        crashes = [float(t) for t in range(0, 120, 2)]
        now = crashes[-1]
        self.assertEqual(guard.delay(guard.recent(crashes, now), now, othersReady=1), 0)
        self.assertEqual(guard.delay(crashes + [now + 2], now + 2, othersReady=1), 0)
        self.assertEqual(guard.delay(crashes + [now + 1], now + 1, othersReady=1), 1)


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
