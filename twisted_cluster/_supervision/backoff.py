"""
When to restart a worker that exited, and when to give up.

These are the supervisor's decisions, kept apart from the code that spawns
and signals so that tests call them directly.  Two kinds of exit are told
apart, because they call for opposite answers:

  - a worker that exits before it was ready I{cannot start} (a bad C{--app},
    a fork refused): restarting it at once would only fail again, so
    L{Backoff} spaces the attempts out and L{StartupPolicy} gives up;
  - a worker that exits after it was ready I{crashed while serving} (a
    request that kills it, a segfaulting extension, a kill): the code
    works, and every second without it is serving capacity lost, so
    L{CrashGuard} replaces it at once, unless the slot crashes so often
    that the restarts themselves would eat the machine.
"""

from __future__ import annotations

from typing import Sequence

import attr


@attr.s(frozen=True, auto_attribs=True)
class Backoff:
    """
    Exponential delays between start-up attempts of a slot whose workers
    cannot start: C{initial}, C{initial*factor}, ... capped at C{maximum}.
    The count starts over once a worker of the slot is ready.
    """

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0

    def delay(self, failures: int) -> float:
        """
        The delay before the restart that follows C{failures} consecutive
        failed start-ups (C{failures >= 1}).
        """
        if failures <= 0:
            return 0.0
        return min(self.maximum, self.initial * self.factor ** (failures - 1))


@attr.s(frozen=True, auto_attribs=True)
class CrashGuard:
    """
    The restart delay of a slot whose worker crashed while serving (it had
    been ready).

    The rule: a slot that crashed at most C{limit} times in the last
    C{window} seconds (this crash included) is restarted at once.  Past
    that it is in a crash loop, and the delay grows from C{initial},
    doubling with each crash over the limit, up to C{maximum}, so that a
    loop costs at most one start-up per C{maximum} seconds.  Serving
    capacity comes first: while no other worker is ready the guard does not
    delay at all, since waiting would only keep the service at zero.

    The defaults (30 crashes a minute, 1 s to 10 s) let a cluster of two
    take one poison request a second (each slot crashes every two seconds)
    with no delay at all.
    """

    window: float = 60.0
    limit: int = 30
    initial: float = 1.0
    maximum: float = 10.0

    def recent(self, crashes: Sequence[float], now: float) -> list[float]:
        """
        The crash times of C{crashes} that are still inside the window at
        C{now}: what a slot needs to keep.
        """
        return [t for t in crashes if now - t < self.window]

    def delay(self, crashes: Sequence[float], now: float, othersReady: int) -> float:
        """
        The delay before restarting a slot that just crashed.

        @param crashes: the slot's crash times, this crash (at C{now})
            included.
        @param othersReady: how many other workers are ready now.
        """
        over = len(self.recent(crashes, now)) - self.limit
        if over <= 0 or othersReady == 0:
            return 0.0
        return min(self.maximum, self.initial * 2 ** (over - 1))


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
