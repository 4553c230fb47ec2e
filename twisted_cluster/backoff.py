"""
When to restart a worker that exited, and when to give up.

These are the supervisor's decisions, kept apart from the code that spawns
and signals so that tests call them directly.
"""

from __future__ import annotations

import attr


@attr.s(frozen=True, auto_attribs=True)
class Backoff:
    """
    Exponential restart delays: C{initial}, C{initial*factor}, ... capped at
    C{maximum}.  A worker that stayed up for C{resetAfter} seconds starts over
    at C{initial}.
    """

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0
    resetAfter: float = 10.0

    def delay(self, failures: int) -> float:
        """
        The delay before the restart that follows C{failures} consecutive
        failures (C{failures >= 1}).
        """
        if failures <= 0:
            return 0.0
        return min(self.maximum, self.initial * self.factor ** (failures - 1))

    def failuresAfterExit(self, failures: int, uptime: float) -> int:
        """
        The count of consecutive failures once a worker exits after
        C{uptime} seconds.
        """
        if uptime >= self.resetAfter:
            return 1
        return failures + 1


@attr.s(frozen=True, auto_attribs=True)
class StartupVerdict:
    """
    What to do when a worker exits before it was ready.

    @ivar fatal: the master should stop.
    @ivar reason: why, in one line, when C{fatal}.
    """

    fatal: bool
    reason: str = ""


@attr.s(frozen=True, auto_attribs=True)
class StartupPolicy:
    """
    Tell a fork storm from a worker that had bad luck.

    Before any worker was ever ready, one app load error is fatal: the same
    code will fail the same way in every worker.  Afterwards (the code was
    changed under a running cluster, a resource ran out) the master keeps
    trying with backoff.  It gives up after C{maxFailures} start-ups in a row
    failed only when no worker is left serving: while some still are, a
    broken slot must not take the healthy workers and their requests down
    with it, so the master keeps retrying at the backoff's slowest pace.
    """

    maxFailures: int = 5

    def judge(
        self,
        consecutiveFailures: int,
        everReady: bool,
        appError: str | None,
        readyWorkers: int = 0,
        otherReason: str | None = None,
    ) -> StartupVerdict:
        """
        @param consecutiveFailures: start-ups that failed in a row, this one
            included.
        @param everReady: whether any worker of this cluster was ever ready.
        @param appError: the worker's one-line app load error, if it sent one.
        @param readyWorkers: how many workers are serving right now.
        @param otherReason: why the worker did not start when it is not an
            app error (it was killed for taking too long), in one line.
        """
        if appError is not None and not everReady:
            return StartupVerdict(True, appError)
        if consecutiveFailures >= self.maxFailures and readyWorkers == 0:
            why = appError or otherReason or "worker exited before it was ready"
            return StartupVerdict(
                True, f"{consecutiveFailures} worker start-ups in a row failed: {why}"
            )
        return StartupVerdict(False)
