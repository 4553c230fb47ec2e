"""
What the master knows about its cluster, as one plain document and as
Prometheus series.

L{clusterStatus} reads the live state of a L{ClusterService} (its
supervisor, its worker processes and the figures their health pings
brought back) into the document served as C{/status.json}.
L{ClusterCollector} turns the same document into Prometheus metric
families at each scrape, so that the page, the JSON and the metrics always
agree.  L{RateHistory} samples the master's accepted-connections counter on
the reactor's clock for the connections-per-second chart.

Nothing here touches the reactor except through the clock it is given, and
nothing imports the master: the service is read duck-typed.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from twisted_cluster._supervision.causes import RestartCause
from twisted_cluster._supervision.process import WorkerState, workerRow

#: Version of the C{/status.json} document; raised on incompatible changes.
STATUS_VERSION = 1

#: Worker states, in life order, as they appear in the document.
STATES = tuple(state.value for state in WorkerState.iterconstants())

#: Restart causes, as counted by the supervisor.
CAUSES = tuple(cause.value for cause in RestartCause.iterconstants())


class RateHistory:
    """
    A bounded history of a counter's rate per second, sampled on a clock.

    @ivar interval: seconds between two samples.
    """

    def __init__(
        self,
        clock: IReactorTime,
        counter: Callable[[], int],
        interval: float = 1.0,
        size: int = 300,
    ) -> None:
        """
        @param counter: returns the counter's current, ever-growing value.
        @param size: samples kept (C{size * interval} seconds of history).
        """
        self._clock = clock
        self._counter = counter
        self.interval = interval
        self._rates: deque[float] = deque(maxlen=size)
        self._last: tuple[float, int] | None = None
        self._loop = LoopingCall(self.sample)
        self._loop.clock = clock

    def start(self) -> None:
        """
        Sample every C{interval} seconds from now on.
        """
        if not self._loop.running:
            self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        """
        Stop sampling (the history is kept).
        """
        if self._loop.running:
            self._loop.stop()

    def sample(self) -> None:
        """
        Record the rate since the previous sample.
        """
        now, value = self._clock.seconds(), self._counter()
        if self._last is not None:
            then, before = self._last
            elapsed = now - then
            if elapsed > 0:
                self._rates.append(max(value - before, 0) / elapsed)
        self._last = (now, value)

    def rates(self) -> list[float]:
        """
        Connections per second, one value per interval, oldest first.
        """
        return list(self._rates)


def _pingRTT(process: Any) -> float | None:
    """
    The round-trip time of C{process}'s last answered health ping, in
    seconds, or C{None} before the first answer.
    """
    rtt = getattr(process, "lastPing", None)
    return None if rtt is None else float(rtt)


def _targetWorkers(service: Any) -> int:
    """
    How many workers the cluster wants now: its slots, which add / remove
    change, or the configured count before the supervisor runs.
    """
    supervisor = service.supervisor
    if supervisor is None:
        return int(service.config.workers)
    return len(supervisor.slotPids())


def clusterStatus(
    service: Any,
    clock: IReactorTime,
    history: RateHistory | None = None,
    control: str | None = None,
    appFigures: Callable[[Any], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """
    The cluster as a JSON-ready document (schema in C{docs/observability.md}).

    @param service: a running L{twisted_cluster._master.service.ClusterService}.
    @param history: the accepted-connections rate history, if sampled.
    @param control: the control site's address, for the record.
    @param appFigures: returns the app's figures of a worker process for
        the status page (L{ClusterApp.statusSeries}); a row gets them as
        C{app} when there are any.
    """
    now = clock.seconds()
    supervisor = service.supervisor
    processes = supervisor.processes() if supervisor is not None else []
    byState = dict.fromkeys(STATES[:-1], 0)
    workers = []
    for process in processes:
        state = process.state.value
        byState[state] = byState.get(state, 0) + 1
        figures = process.figures
        row = workerRow(process, supervisor.slotRestarts(process.workerId))
        row.update(
            uptime=round(now - process.startedAt, 3),
            open=figures.open,
            served=figures.served,
            rss=figures.rss,
            ping=_pingRTT(process),
        )
        figures = appFigures(process) if appFigures is not None else {}
        if figures:
            row["app"] = figures
        workers.append(row)
    restarts = dict.fromkeys(CAUSES, 0)
    if supervisor is not None:
        restarts.update(supervisor.restarts)
    rates = history.rates() if history is not None else []
    return {
        "version": STATUS_VERSION,
        "time": now,
        "master": {
            "pid": os.getpid(),
            "listening": [listener.address() for listener in service.listeners],
            "control": control,
        },
        "cluster": {
            "target": _targetWorkers(service),
            "states": byState,
            "restarts": restarts,
            "accepted": service.accepted(),
            "redispatched": service.redispatched,
            "dropped": service.dropped,
            "waiting": service.waiting,
            "capped": service.capped,
            "rate": rates[-1] if rates else 0.0,
        },
        "history": {
            "interval": history.interval if history is not None else None,
            "rates": [round(r, 3) for r in rates],
        },
        "workers": workers,
    }


#: The per-worker series: the key of the worker's entry in the status
#: document, the family type, the metric's name and its help text.
_WORKER_SERIES: tuple[tuple[str, type[GaugeMetricFamily | CounterMetricFamily], str, str], ...] = (
    ("uptime", GaugeMetricFamily, "twisted_cluster_worker_uptime_seconds",
     "Seconds since the worker process started."),
    ("dispatched", CounterMetricFamily, "twisted_cluster_worker_dispatched_connections",
     "Connections the master handed to this worker process."),
    ("served", CounterMetricFamily, "twisted_cluster_worker_served_connections",
     "Connections this worker process finished serving (last ping)."),
    ("open", GaugeMetricFamily, "twisted_cluster_worker_open_connections",
     "Connections open in this worker process (last ping)."),
    ("rss", GaugeMetricFamily, "twisted_cluster_worker_rss_bytes",
     "Resident memory of this worker process (last ping)."),
    ("ping", GaugeMetricFamily, "twisted_cluster_worker_ping_seconds",
     "Round-trip time of the last answered health ping."),
)


class ClusterCollector(Collector):
    """
    A Prometheus collector that reads the cluster's live state at every
    scrape (see L{clusterStatus}): nothing is stored twice, nothing drifts.
    """

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        """
        @param status: returns the current L{clusterStatus} document.
        """
        self._status = status

    def collect(self) -> Iterator[Any]:
        """
        The cluster's metric families, from a fresh status document.
        """
        status = self._status()
        cluster = status["cluster"]
        target = GaugeMetricFamily(
            "twisted_cluster_workers_target", "Workers the cluster keeps running."
        )
        target.add_metric([], cluster["target"])
        yield target
        states = GaugeMetricFamily(
            "twisted_cluster_workers", "Worker processes by state.", labels=["state"]
        )
        for state, count in cluster["states"].items():
            states.add_metric([state], count)
        yield states
        restarts = CounterMetricFamily(
            "twisted_cluster_restarts",
            "Worker restarts by cause (" + ", ".join(CAUSES) + ").",
            labels=["cause"],
        )
        for cause, count in cluster["restarts"].items():
            restarts.add_metric([cause], count)
        yield restarts
        accepted = CounterMetricFamily(
            "twisted_cluster_connections_accepted",
            "Connections the master accepted.",
        )
        accepted.add_metric([], cluster["accepted"])
        yield accepted
        failures = CounterMetricFamily(
            "twisted_cluster_handoff_failures",
            "Connections whose hand-off failed: redispatched (the worker died "
            "before adopting them, another one got them) or dropped (closed: "
            "no worker ready and the waiting queue full).",
            labels=["outcome"],
        )
        failures.add_metric(["redispatched"], cluster["redispatched"])
        failures.add_metric(["dropped"], cluster["dropped"])
        yield failures
        waiting = GaugeMetricFamily(
            "twisted_cluster_connections_waiting",
            "Connections waiting in the master for a worker (none ready, or "
            "every one at --worker-connections).",
        )
        waiting.add_metric([], cluster["waiting"])
        yield waiting
        capped = CounterMetricFamily(
            "twisted_cluster_connections_capped",
            "Connections that waited in the master because every ready worker "
            "had --worker-connections open.",
        )
        capped.add_metric([], cluster["capped"])
        yield capped
        yield from self._perWorker(status["workers"])

    def _perWorker(self, workers: list[dict[str, Any]]) -> Iterator[Any]:
        labels = ["worker", "pid"]
        info = GaugeMetricFamily(
            "twisted_cluster_worker_state",
            "1 for the state each worker process is in.",
            labels=labels + ["state"],
        )
        series = {
            key: kind(name, documentation, labels=labels)
            for key, kind, name, documentation in _WORKER_SERIES
        }
        for worker in workers:
            values = [str(worker["id"]), str(worker["pid"])]
            info.add_metric(values + [worker["state"]], 1)
            for key, family in series.items():
                if worker[key] is not None:
                    family.add_metric(values, worker[key])
        yield info
        yield from series.values()


def clusterRegistry(
    status: Callable[[], dict[str, Any]], *collectors: Collector
) -> CollectorRegistry:
    """
    A registry of its own (not the process-global one) with the cluster's
    series, then C{collectors} (the app's series gathered from the
    workers), then the master process's own C{process_*} series.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(status))
    for collector in collectors:
        registry.register(collector)
    ProcessCollector(registry=registry)
    return registry
