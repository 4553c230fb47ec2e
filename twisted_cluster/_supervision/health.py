"""
Health checks: the master pings every ready worker over AMP and replaces
the ones whose reactor stopped turning.

L{HealthPolicy} is the pure decision (given when the last ping was sent and
when it was answered: is the worker fine or hung?);  L{HealthMonitor} acts
on it with an injected clock, so that tests drive it with a
L{twisted.internet.task.Clock} and fake processes.
"""

from __future__ import annotations

from typing import Any, Callable

import attr
from constantly import NamedConstant, Names
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_cluster import logevents
from twisted_cluster._contract import commands
from twisted_cluster._supervision.process import READY, IWorkerProcess, workerFields

log = Logger()

class HealthVerdict(Names):
    """
    What L{HealthPolicy.verdict} says of a worker: it may be pinged
    (C{OK}), its ping is outstanding within the timeout (C{WAITING}), or
    it is hung (C{HUNG}).
    """

    OK = NamedConstant()
    WAITING = NamedConstant()
    HUNG = NamedConstant()


OK, WAITING, HUNG = HealthVerdict.OK, HealthVerdict.WAITING, HealthVerdict.HUNG


@attr.s(frozen=True, auto_attribs=True)
class HealthPolicy:
    """
    When to ping a worker and when to call it hung.

    @ivar interval: seconds between two pings of a worker (a worker has at
        most one ping outstanding: a slow one is not pinged again).
    @ivar timeout: seconds a ping may stay unanswered before the worker is
        hung.
    """

    interval: float = 5.0
    timeout: float = 10.0

    def verdict(self, now: float, sentAt: float | None, answeredAt: float | None) -> str:
        """
        The state of a worker whose last ping was sent at C{sentAt} and whose
        last answer came at C{answeredAt} (C{None}: never).

        @return: L{OK} (no ping outstanding), L{WAITING} (a ping is
            outstanding, within the timeout) or L{HUNG}.
        """
        if sentAt is None or (answeredAt is not None and answeredAt >= sentAt):
            return OK
        return HUNG if now - sentAt >= self.timeout else WAITING


@attr.s(auto_attribs=True)
class _PingRecord:
    sentAt: float | None = None
    answeredAt: float | None = None
    check: Any = None


class HealthMonitor:
    """
    Pings every ready worker each C{policy.interval} seconds; a worker that
    leaves a ping unanswered for C{policy.timeout} seconds is hung: the
    supervisor logs its Python stacks, SIGKILLs it (L{Supervisor.killHung})
    and replaces it, counting the restart as a C{"hang"}.

    Each answer updates the worker's C{figures} (open, served, rss) and
    C{lastPing} (the round trip in seconds), then goes to C{onFigures}
    (the recycler).
    """

    def __init__(
        self,
        clock: IReactorTime,
        supervisor: Any,
        policy: HealthPolicy,
        onFigures: Callable[[IWorkerProcess], None] = lambda process: None,
    ) -> None:
        """
        @param clock: an L{twisted.internet.interfaces.IReactorTime} (the
            reactor, or a L{twisted.internet.task.Clock} in tests).
        @param supervisor: gives C{ready()} and C{killHung(process)}.
        """
        self._clock = clock
        self._supervisor = supervisor
        self._policy = policy
        self._onFigures = onFigures
        self._records: dict[IWorkerProcess, _PingRecord] = {}
        self._loop = LoopingCall(self.tick)
        self._loop.clock = clock

    def start(self) -> None:
        """
        Ping now and every interval from now on.
        """
        self._loop.start(self._policy.interval, now=True)

    def stop(self) -> None:
        """
        Stop pinging; cancel the pending timeout checks.
        """
        if self._loop.running:
            self._loop.stop()
        for record in self._records.values():
            if record.check is not None and record.check.active():
                record.check.cancel()
        self._records.clear()

    def tick(self) -> None:
        """
        Ping each ready worker that has no ping outstanding.
        """
        ready = [p for p in self._supervisor.ready() if p.state == READY]
        for gone in set(self._records) - set(ready):
            record = self._records.pop(gone)
            if record.check is not None and record.check.active():
                record.check.cancel()
        for process in ready:
            record = self._records.setdefault(process, _PingRecord())
            now = self._clock.seconds()
            if self._policy.verdict(now, record.sentAt, record.answeredAt) == OK:
                self._ping(process, record, now)

    def _ping(self, process: IWorkerProcess, record: _PingRecord, now: float) -> None:
        record.sentAt = now
        record.check = self._clock.callLater(self._policy.timeout, self._judge, process)
        d = process.callRemote(commands.Ping)
        # A ping that fails (the channel broke) is judged by its timeout; a
        # failure while handling the answer is logged with the worker's id,
        # not left to surface as an unhandled error in a Deferred.
        d.addCallbacks(self._answered, lambda failure: None, (process, record, now))
        d.addErrback(self._answerFailed, process)

    def _answerFailed(self, failure: Failure, process: IWorkerProcess) -> None:
        log.failure(
            "handling the ping answer of worker {worker_id} pid {worker_pid} failed",
            failure, cluster_event=logevents.PING_ANSWER_FAILED,
            **workerFields(process),
        )

    def _answered(
        self, answer: dict[str, int], process: IWorkerProcess, record: _PingRecord,
        sentAt: float,
    ) -> None:
        if process not in self._records or record.sentAt != sentAt:
            return
        now = self._clock.seconds()
        record.answeredAt = now
        if record.check is not None and record.check.active():
            record.check.cancel()
        record.check = None
        process.figures = commands.PingFigures.fromAnswer(answer)
        process.lastPing = now - sentAt
        handoff = process.handoff
        if handoff is not None:
            # Its reactor runs: a stall of its hand-off channel is over.
            handoff.alive()
        self._onFigures(process)

    def _judge(self, process: IWorkerProcess) -> None:
        record = self._records.get(process)
        if record is None or process.state != READY:
            return
        record.check = None
        now = self._clock.seconds()
        if self._policy.verdict(now, record.sentAt, record.answeredAt) != HUNG:
            return
        assert record.sentAt is not None
        del self._records[process]
        log.warn(
            "worker {worker_id} pid {worker_pid} did not answer a ping for {silence:.1f}s "
            "(hang): killing it",
            cluster_event=logevents.WORKER_HUNG,
            **workerFields(process),
            silence=now - record.sentAt,
        )
        self._supervisor.killHung(process)
