"""
One drain of a worker's connections: L{Drain}.

The worker runtime starts it when the master says L{Drain} (or SIGTERM, or
the master is gone); it tells the app, closes connections as they become
idle, and calls C{done} once nothing is left, the app's drain finished, or
the deadline passed.  It runs on the clock it is given: the unit tests
drive it with a L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_cluster import logevents
from twisted_cluster._worker.apphooks import AppHooks
from twisted_cluster._worker.tracking import ConnectionTracker

#: Seconds a draining worker leaves idle connections (just adopted, or
#: keep-alive between requests) to send the request that may be on its way;
#: it is answered with C{Connection: close}.  Then idle ones are closed.
#: A plain protocol that declares no drain and says nothing of its
#: idleness is idle when it received nothing for as long.
IDLE_GRACE = 2.0

#: Seconds between two looks at the connections left.
CHECK_EVERY = 0.05

log = Logger()


class Drain:
    """
    Drain one worker's connections, then call C{done} (once).

    An app that declares a drain (its C{workerDraining}) owns its
    connections: when its drain has finished, those left are closed and
    the drain ends as soon as they are.  An app that declares none is
    drained for it: HTTP channels close after their current response, idle
    ones after L{IDLE_GRACE}, and so do plain protocols that received
    nothing for L{IDLE_GRACE}.  At the deadline the drain ends whatever is
    left (the master kills the worker then anyway).
    """

    def __init__(
        self,
        clock: IReactorTime,
        workerId: int,
        tracker: ConnectionTracker,
        hooks: AppHooks,
        done: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._workerId = workerId
        self._tracker = tracker
        self._hooks = hooks
        self._done = done
        self._started = 0.0
        self._appDraining = False
        self._finished = False
        self._loop: LoopingCall | None = None
        self._giveUp: IDelayedCall | None = None

    def start(self, within: float) -> None:
        """
        Tell the app the worker drains, with the deadline C{within} seconds
        from now, and close connections as they become idle.
        """
        self._started = self._clock.seconds()
        self._tracker.watchActivity(self._clock)
        appDrain = self._hooks.draining(self._started + within)
        if appDrain is None and self._tracker.open == 0:
            self._finish()
            return
        self._appDraining = appDrain is not None
        self._giveUp = self._clock.callLater(within, self._finish)
        self._loop = LoopingCall(self._closeIdle)
        self._loop.clock = self._clock
        self._loop.start(CHECK_EVERY)
        if appDrain is not None:
            appDrain.addCallback(self._appDrained)

    def connectionClosed(self) -> None:
        """
        One of the worker's connections closed.
        """
        if not self._appDraining and self._tracker.open == 0:
            self._finish()

    def stop(self) -> None:
        """
        End the drain's timers (the worker exits for another reason).
        """
        self._finished = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._giveUp is not None and self._giveUp.active():
            self._giveUp.cancel()

    def _finish(self) -> None:
        if self._finished:
            return
        self.stop()
        self._done()

    def _appDrained(self, _: Any) -> None:
        """
        The app's drain finished: close what it left open, end once closed.
        """
        self._appDraining = False
        if self._finished:
            return
        log.info(
            "worker {worker_id}: the app drained; closing its {count} connections left",
            cluster_event=logevents.APP_DRAINED,
            worker_id=self._workerId,
            count=self._tracker.open,
        )
        self._tracker.closeAll()
        if self._tracker.open == 0:
            self._finish()

    def _closeIdle(self) -> None:
        closeIdleNow = self._clock.seconds() - self._started >= IDLE_GRACE
        if self._appDraining:
            # HTTP channels still close after their response; the app's
            # other connections are the app's to close.
            self._tracker.closeIdle(closeIdleNow)
        elif self._tracker.closeIdle(closeIdleNow, quietFor=IDLE_GRACE) == 0:
            self._finish()
