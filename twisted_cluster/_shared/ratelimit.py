"""
At most one log event per interval for a thing that can repeat without
bound (a master out of descriptors, a flood of bad PROXY headers or of
refused control requests), each event saying how many were held back.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime


class RateLimiter:
    """
    Lets one occurrence through per C{interval} seconds and counts the
    others.
    """

    def __init__(self, clock: IReactorTime, interval: float) -> None:
        self._clock = clock
        self._interval = interval
        self._last: float | None = None
        self._held = 0

    def allow(self) -> int | None:
        """
        Note one occurrence.

        @return: C{None} when it is held back (less than C{interval} after
            the last one let through); otherwise how many were held back
            since that one, the count starting again from this one.
        """
        now = self._clock.seconds()
        if self._last is not None and now - self._last < self._interval:
            self._held += 1
            return None
        held, self._held, self._last = self._held, 0, now
        return held
