"""
Tests for L{twisted_cluster._shared.ratelimit}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster._shared.ratelimit import RateLimiter


class RateLimiterTests(SynchronousTestCase):
    def test_oneLetThroughPerIntervalWithTheCountHeldBack(self) -> None:
        clock = Clock()
        limiter = RateLimiter(clock, 10.0)
        self.assertEqual(limiter.allow(), 0)
        for _ in range(3):
            clock.advance(2)
            self.assertIsNone(limiter.allow())
        clock.advance(4)  # 10 s after the first one
        self.assertEqual(limiter.allow(), 3)
        clock.advance(9.9)
        self.assertIsNone(limiter.allow())
        clock.advance(0.1)
        self.assertEqual(limiter.allow(), 1)
