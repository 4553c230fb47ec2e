"""
The master's signals: every one an nginx or gunicorn operator habitually
sends has a meaning here, and none kills the master by its default action.

    TERM, INT   graceful stop (a second INT, a second later: kill the workers)
    QUIT        fast stop: workers SIGKILLed at once, exit 0
    HUP         rolling restart of the workers
    USR1        reopen the log file, and tell the workers
    USR2        upgrade the master in place (L{twisted_cluster._master.upgrade})
    TTIN, TTOU  one worker more, one less
    WINCH       ignored, logged once (see below)

gunicorn and nginx stop their workers gracefully on WINCH when daemonized,
leaving a master with none, the step of an upgrade done by hand.  Here the
upgrade hands over by itself, and a master with no worker only queues
connections; WINCH is also what a terminal sends on every resize, so it is
ignored (one log line), as gunicorn does in the foreground.

Handlers run in the reactor thread (C{callFromThread}), installed once the
reactor runs, over its own (so that a graceful stop exits 0).
"""

from __future__ import annotations

import signal
from typing import Any, Callable, Mapping

from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.logger import Logger

from twisted_cluster import logevents

log = Logger()

#: Seconds after the first stop signal from which a second SIGINT kills
#: the workers (a person pressing Ctrl-C again).
SECOND_INTERRUPT = 1.0


class StopSignals:
    """
    What TERM, INT and QUIT do: the decision apart from the signals.

    TERM and INT stop gracefully, once; a second INT a second or more after
    the first stop signal kills the workers at once, a repeated TERM changes
    nothing (tools such as C{timeout} deliver it twice).  QUIT kills the
    workers at once and stops, whatever came before.
    """

    def __init__(
        self, clock: IReactorTime, stop: Callable[[], None], killWorkers: Callable[[], Any]
    ) -> None:
        """
        @param clock: provides C{seconds()}.
        @param stop: stops the reactor (which stops the cluster gracefully).
        @param killWorkers: SIGKILLs every worker.
        """
        self._clock = clock
        self._stop = stop
        self._killWorkers = killWorkers
        self._stoppedAt: float | None = None
        self._killed = False

    def received(self, signum: int) -> None:
        """
        Act on stop signal C{signum}.
        """
        now = self._clock.seconds()
        if signum == signal.SIGQUIT:
            log.info("SIGQUIT: stopping now, killing the workers",
                cluster_event=logevents.QUIT_STOPPING)
            self._kill()
        elif (
            signum == signal.SIGINT
            and self._stoppedAt is not None
            and now - self._stoppedAt >= SECOND_INTERRUPT
        ):
            log.warn("second interrupt: killing the workers now",
                cluster_event=logevents.KILLING_NOW)
            self._kill()
        if self._stoppedAt is None:
            self._stoppedAt = now
            self._stop()

    def rearm(self) -> None:
        """
        A stop that was asked is not carried out (it waited for a master
        upgrade that failed, L{twisted_cluster._master.upgrade}): the next
        stop signal stops, as the first one would have.
        """
        self._stoppedAt = None

    def _kill(self) -> None:
        if not self._killed:
            self._killed = True
            self._killWorkers()


def installSignals(
    reactor: IReactorFromThreads,
    stopping: StopSignals,
    operations: Mapping[signal.Signals, Callable[[], Any]],
) -> None:
    """
    Install the master's handlers: TERM, INT and QUIT to C{stopping}, each
    signal of C{operations} to its callable, and WINCH ignored with a log
    line.  Signals run their handler in the reactor thread.
    """

    def stop(signum: int, frame: Any) -> None:
        reactor.callFromThread(stopping.received, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, stop)

    def operate(signum: int, frame: Any) -> None:
        reactor.callFromThread(operations[signal.Signals(signum)])

    for signum in operations:
        signal.signal(signum, operate)

    # A terminal resized by hand sends dozens: one line says it all.
    told: list[bool] = []

    def ignored(signum: int, frame: Any) -> None:
        if not told:
            told.append(True)
            reactor.callFromThread(
                log.info,
                "SIGWINCH ignored (terminal resized?): the workers keep serving; "
                "logged once",
                signal="WINCH",
            )

    signal.signal(signal.SIGWINCH, ignored)
