"""
Gathering the app's metrics from every worker when C{/metrics} is scraped.

Pulled at scrape time rather than pushed with each health ping: a cluster
nobody scrapes spends nothing on it (a ping every second from every
worker would serialize every registry whether or not anyone reads it),
and a scrape shows the values of now, not of the last ping.  What a
worker counted after the last scrape is not lost when it drains and
exits: it sends its last snapshot (L{FinalMetrics}) just before it exits.
Only a worker killed outright (SIGKILL, a crash) takes with it what it
counted since the last scrape, as a single process would.

L{MetricsGatherer} asks every ready or draining worker at once, waits for
each at most C{timeout} seconds (a hung worker is I{stale} for that
scrape, and counted in C{twisted_cluster_scrape_errors_total}), never
sends a worker a second request while its first is unanswered, and
shares one gathering among the scrapes that arrive while it runs.  Once
every worker answered (or timed out), the answers are kept within the
cluster-wide L{Budget} (the largest snapshots are left out: stale, reason
C{budget}), and a family whose names belong to another family is dropped
(reason C{conflict}, see L{AppSeries.update}).  What a worker sends is
untrusted: its error text reaches the master's log escaped and cut.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.internet.defer import Deferred, DeferredList, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_cluster import logevents
from twisted_cluster._contract.commands import CollectMetrics, MetricsUnavailable
from twisted_cluster._contract.metricsnapshot import (
    Family,
    Snapshot,
    SnapshotError,
    decodeSnapshot,
)
from twisted_cluster._control.appbudget import Budget, Size, overBudget
from twisted_cluster._control.appseries import AppSeries, Key
from twisted_cluster._shared.ratelimit import RateLimiter
from twisted_cluster._shared.workerlog import escapeControls
from twisted_cluster._supervision.process import DRAINING, READY

log = Logger()

#: Seconds a scrape waits for one worker's metrics.
TIMEOUT = 1.0

#: Seconds after the start of a gathering during which the status page
#: starts no other one.
REFRESH_AFTER = 1.0

#: Seconds between two log events about one worker's unread metrics.
LOG_INTERVAL = 60.0

#: Why a worker's metrics were not read, or only in part, as C{reason}
#: labels.
TIMED_OUT, REFUSED, FAILED, BUDGET, CONFLICT = (
    "timeout", "refused", "failed", "budget", "conflict")

#: The most characters of a worker's error text the master logs.
MAX_DETAIL = 200


def _clean(detail: str) -> str:
    """
    C{detail}, from a worker, fit for one line of the master's log: its
    control characters escaped, cut to L{MAX_DETAIL}.
    """
    text = escapeControls(detail)
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "..."


def _key(process: Any) -> Key:
    return (int(process.workerId), int(process.pid))


def _within(answer: Deferred[Any], clock: IReactorTime, timeout: float) -> Deferred[Any]:
    """
    A Deferred that fires like C{answer}, or fails with L{TimeoutError}
    after C{timeout} seconds; C{answer} itself is left to fire when it
    does (an AMP call cannot be taken back).
    """
    result: Deferred[Any] = Deferred()
    timer = clock.callLater(timeout, lambda: result.errback(TimeoutError(timeout)))

    def settle(value: Any) -> None:
        if not timer.active():
            return
        timer.cancel()
        if isinstance(value, Failure):
            result.errback(value)
        else:
            result.callback(value)

    answer.addBoth(settle)
    return result


class MetricsGatherer:
    """
    Reads the app's metrics of every worker into an L{AppSeries}.

    @ivar series: the merged families.
    @ivar errors: worker id and reason -> scrapes that could not read it.
    @ivar lastDuration: seconds the last gathering took.
    """

    def __init__(
        self,
        clock: IReactorTime,
        processes: Callable[[], list[Any]],
        series: AppSeries | None = None,
        timeout: float = TIMEOUT,
        budget: Budget = Budget(),
    ) -> None:
        """
        @param processes: returns the live worker processes
            (L{WorkerProcess}-like: C{workerId}, C{pid}, C{state},
            C{control}, C{callRemote}, C{finalMetrics}).
        @param budget: what the answers of one gathering may weigh together.
        """
        self._clock = clock
        self._processes = processes
        self.series = series if series is not None else AppSeries()
        self._timeout = timeout
        self._budget = budget
        self._answers: dict[Key, tuple[Snapshot, Size]] = {}
        self._known: dict[Key, Any] = {}
        self._asking: set[Key] = set()
        self._running: Deferred[Any] | None = None
        self._lastStart: float | None = None
        self._waiting: list[Deferred[None]] = []
        self._limiters: dict[tuple[int, str], RateLimiter] = {}
        self.errors: Counter[tuple[int, str]] = Counter()
        self.lastDuration = 0.0

    def gather(self) -> Deferred[None]:
        """
        Ask every worker for its metrics; fires (never fails) once each one
        answered, failed or timed out.  A call while a gathering runs
        shares it.
        """
        waiter: Deferred[None] = Deferred()
        self._waiting.append(waiter)
        if self._running is None:
            self._start()
        return waiter

    def refresh(self) -> None:
        """
        For the status page: start a gathering, without waiting for it,
        when a worker names series for the page (or none was asked yet) and
        none started within L{REFRESH_AFTER}; the page shows the figures of
        the last one.
        """
        if self._running is not None:
            return
        last = self._lastStart
        if last is not None and (
            not self.series.wantsStatus() or self._clock.seconds() - last < REFRESH_AFTER
        ):
            return
        self._start()

    def _start(self) -> None:
        started = self._lastStart = self._clock.seconds()
        live = {
            _key(p): p for p in self._processes()
            if p.state in (READY, DRAINING) and getattr(p, "control", None) is not None
        }
        for key in set(self._known) - set(live):
            self._retire(key, self._known.pop(key))
        self.series.newScrape()
        calls = []
        for key, process in sorted(live.items()):
            self._known[key] = process
            if key in self._asking:
                # Its previous request is still unanswered.
                self._unread(key, TIMED_OUT, "its previous request is unanswered")
                continue
            calls.append(self._ask(key, process))
        # Set before the callback, which runs at once when nobody is asked.
        self._running = DeferredList(calls, consumeErrors=True)
        self._running.addBoth(lambda _: self._finished(started))

    def _finished(self, started: float) -> None:
        answers, self._answers = self._answers, {}
        left = overBudget({key: size for key, (_, size) in answers.items()}, self._budget)
        for key, (snapshot, size) in sorted(answers.items()):
            if key in left:
                self._unread(key, BUDGET, (
                    f"{size.samples} samples, {size.bytes} bytes: over what is left of "
                    f"the cluster's {self._budget.samples} samples, {self._budget.bytes} bytes"))
                continue
            dropped = self.series.update(key, snapshot.families, snapshot.status)
            if dropped:
                self._conflict(key, dropped)
        self.lastDuration = self._clock.seconds() - started
        self._running = None
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(None)

    def _ask(self, key: Key, process: Any) -> Deferred[None]:
        self._asking.add(key)
        answer = process.callRemote(CollectMetrics)

        def answered(result: Any) -> Any:
            self._asking.discard(key)
            return result

        answer.addBoth(answered)
        d = _within(answer, self._clock, self._timeout)
        d.addCallbacks(lambda result: self._read(key, result["snapshot"]),
                       lambda failure: self._failed(key, failure))
        return d

    def _read(self, key: Key, snapshot: bytes) -> None:
        if len(snapshot) > self._budget.bytes:
            # It cannot fit, whatever the others send: not even decoded.
            self._unread(key, BUDGET, f"{len(snapshot)} bytes, over the cluster's "
                                      f"{self._budget.bytes} bytes")
            return
        try:
            decoded = decodeSnapshot(snapshot)
        except SnapshotError as e:
            self._unread(key, REFUSED, str(e))
            return
        samples = sum(len(family.samples) for family in decoded.families)
        self._answers[key] = (decoded, Size(samples, len(snapshot)))

    def _failed(self, key: Key, failure: Failure) -> None:
        if failure.check(TimeoutError):
            self._unread(key, TIMED_OUT, f"no answer within {self._timeout}s")
        elif failure.check(MetricsUnavailable):
            self._unread(key, FAILED, str(failure.value))
        else:
            self._unread(key, FAILED, failure.getErrorMessage())

    def _allow(self, workerId: int, event: str) -> int | None:
        """
        Whether to log C{event} about worker C{workerId} now (once a
        minute at most; see L{RateLimiter.allow}).
        """
        limiter = self._limiters.setdefault(
            (workerId, event), RateLimiter(self._clock, LOG_INTERVAL))
        return limiter.allow()

    def _unread(self, key: Key, reason: str, detail: str) -> None:
        workerId, pid = key
        self.series.stale(key)
        self.errors[(workerId, reason)] += 1
        held = self._allow(workerId, logevents.APP_METRICS_STALE)
        if held is not None:
            log.warn(
                "app metrics of worker {worker_id} pid {worker_pid} not read ({cause}): "
                "{detail}; its series are stale ({held} more such scrapes held back)",
                cluster_event=logevents.APP_METRICS_STALE,
                worker_id=workerId, worker_pid=pid, cause=reason, detail=_clean(detail),
                held=held,
            )

    def _conflict(self, key: Key, dropped: list[str]) -> None:
        workerId, pid = key
        self.errors[(workerId, CONFLICT)] += 1
        held = self._allow(workerId, logevents.APP_METRICS_CONFLICT)
        if held is not None:
            log.warn(
                "app metrics of worker {worker_id} pid {worker_pid}: {count} families "
                "left out, their names belong to other families: {families} "
                "({held} more such scrapes held back)",
                cluster_event=logevents.APP_METRICS_CONFLICT,
                worker_id=workerId, worker_pid=pid, cause=CONFLICT, count=len(dropped),
                families=_clean(", ".join(dropped)), held=held,
            )

    def _retire(self, key: Key, process: Any) -> None:
        final: list[Family] | None = None
        snapshot = getattr(process, "finalMetrics", None)
        if snapshot is not None:
            try:
                final = decodeSnapshot(snapshot).families
            except SnapshotError as e:
                self.errors[(key[0], REFUSED)] += 1
                log.warn(
                    "final app metrics of worker {worker_id} pid {worker_pid} refused: "
                    "{detail}; its last scraped values are kept",
                    cluster_event=logevents.APP_METRICS_REFUSED,
                    worker_id=key[0], worker_pid=key[1], cause=REFUSED, detail=_clean(str(e)),
                )
        self.series.retire(key, final)

    def collect(self) -> Iterator[Any]:
        """
        The app's merged families, then the gathering's own: errors by
        worker and reason, each process's freshness, the last duration.
        """
        yield from self.series.collect()
        errors = CounterMetricFamily(
            "twisted_cluster_scrape_errors",
            "Gatherings (for a /metrics scrape or the status page) that could not "
            "read a worker's app metrics, or only in part, by worker and reason "
            "(timeout; refused: a snapshot over the bounds; failed: the app's "
            "collector raised or the worker went away; budget: left out to keep the "
            "cluster's app series within their budget; conflict: families left out "
            "whose names belong to other families).",
            labels=["worker", "reason"],
        )
        for (workerId, reason), count in sorted(self.errors.items()):
            errors.add_metric([str(workerId), reason], count)
        yield errors
        fresh = GaugeMetricFamily(
            "twisted_cluster_app_metrics_fresh",
            "1 when the worker process answered this scrape with its app metrics, "
            "0 when its series are stale (left out of this scrape).",
            labels=["worker", "pid"],
        )
        for key in sorted(self._known):
            fresh.add_metric([str(key[0]), str(key[1])], 1 if self.series.fresh(key) else 0)
        yield fresh
        duration = GaugeMetricFamily(
            "twisted_cluster_app_metrics_gather_seconds",
            "Seconds the last gathering of the workers' app metrics took.",
        )
        duration.add_metric([], self.lastDuration)
        yield duration
