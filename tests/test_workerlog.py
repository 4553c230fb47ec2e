"""
Tests for L{twisted_cluster.workerlog}: a worker's failures reach the
master's log with their exception's text.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import eventAsJSON, eventFromJSON
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster.workerlog import exceptionsAsText


def failure() -> Failure:
    try:
        raise ValueError("no such user")
    except ValueError:
        return Failure()


class ExceptionsAsTextTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.observer = exceptionsAsText(self.seen.append)

    def test_theExceptionSurvivesJSON(self) -> None:
        """
        What the master reads back names the exception and its message,
        not C{{'unpersistable': True}}.
        """
        self.observer({"log_format": "it failed", "log_failure": failure()})
        [event] = self.seen
        received = eventFromJSON(eventAsJSON(event))
        traceback = received["log_failure"].getTraceback()
        self.assertTrue(
            traceback.rstrip().endswith("builtins.ValueError: no such user"), traceback
        )
        self.assertNotIn("unpersistable", traceback)

    def test_theLoggedEventIsLeftAlone(self) -> None:
        logged = failure()
        event = {"log_format": "it failed", "log_failure": logged}
        self.observer(event)
        self.assertIs(event["log_failure"], logged)
        self.assertIsInstance(logged.value, ValueError)
        self.assertIs(self.seen[0]["log_failure"].type, ValueError)

    def test_eventsWithoutAFailurePassAsTheyAre(self) -> None:
        event = {"log_format": "hello"}
        self.observer(event)
        self.assertIs(self.seen[0], event)
