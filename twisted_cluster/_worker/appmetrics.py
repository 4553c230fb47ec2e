"""
The worker's side of the cluster's application metrics: a snapshot of the
app's C{prometheus_client} registry, for the master's C{/metrics}.

The registry is the one the app names in L{ClusterApp.metricsRegistry
<twisted_cluster.ClusterApp>}, else C{prometheus_client}'s default one,
but only when the app imported C{prometheus_client}: a worker whose app
does not use it never loads it (nor pays for it), and answers with no
families.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_cluster import logevents
from twisted_cluster._contract.commands import FinalMetrics, MetricsUnavailable
from twisted_cluster._contract.metricsnapshot import Family, Sample, encodeSnapshot
from twisted_cluster._shared.ratelimit import RateLimiter

log = Logger()

#: Seconds an exiting worker waits for the master to take its last
#: snapshot.
FINAL_TIMEOUT = 1.0

#: Seconds between two logged failures of the app's registry: the master
#: asks at every scrape, and a collector that raises would otherwise log
#: a traceback each time.
LOG_INTERVAL = 60.0

#: The most characters of a failure's text sent to the master.
MAX_REASON = 200

#: The family types whose C{NAME_created} samples (the time a series was
#: created, per process) are left out: the master carries a slot's counts
#: over from one process to the next.
_CREATED = ("counter", "histogram", "summary", "gaugehistogram")


def _family(metric: Any) -> Family:
    created = metric.name + "_created" if metric.type in _CREATED else None
    return Family(
        metric.name,
        metric.type,
        metric.documentation,
        tuple(
            Sample(s.name, tuple(sorted(s.labels.items())), float(s.value))
            for s in metric.samples
            if s.name != created
        ),
    )


class AppMetrics:
    """
    The app's metrics in one worker.
    """

    def __init__(
        self,
        workerId: int,
        registry: Any = None,
        statusSeries: tuple[str, ...] = (),
        *,
        clock: IReactorTime,
    ) -> None:
        """
        @param clock: what paces the logging of the registry's failures.
        @param registry: what the app named (anything with C{collect()}
            yielding C{prometheus_client} metric families), or C{None}
            for C{prometheus_client}'s default registry once the app
            imported it.
        @param statusSeries: the sample names the app wants on the status
            page.
        """
        self._workerId = workerId
        self._registry = registry
        self._status = statusSeries
        self._failures = RateLimiter(clock, LOG_INTERVAL)

    def registry(self) -> Any:
        """
        The registry to read, or C{None} when the app uses no
        C{prometheus_client}.
        """
        if self._registry is not None:
            return self._registry
        module = sys.modules.get("prometheus_client")
        return None if module is None else module.REGISTRY

    def snapshot(self) -> bytes:
        """
        The app's families now (L{twisted_cluster._contract.metricsnapshot}).

        @raise MetricsUnavailable: when a collector of the app raised (its
            text at most L{MAX_REASON} characters); the traceback is logged
            once per L{LOG_INTERVAL}, with how many failures were held back.
        """
        registry = self.registry()
        if registry is None:
            return encodeSnapshot([])
        try:
            families = [_family(metric) for metric in registry.collect()]
            return encodeSnapshot(families, self._status)
        except Exception as e:
            held = self._failures.allow()
            if held is not None:
                log.failure(
                    "worker {worker_id}: the app's metrics registry failed "
                    "({held} more such failures held back)",
                    cluster_event=logevents.APP_METRICS_FAILED,
                    worker_id=self._workerId, held=held,
                )
            raise MetricsUnavailable(f"{type(e).__name__}: {e}"[:MAX_REASON]) from e

    def sendFinal(self, control: Any, clock: IReactorTime) -> Deferred[None]:
        """
        Give the master the last snapshot before this worker exits, so that
        what it counted since the last scrape is not lost; fires once the
        master took it, or after L{FINAL_TIMEOUT}, or at once when the app
        uses no C{prometheus_client} or the master is gone.
        """
        if self.registry() is None or control is None or control.transport is None:
            return succeed(None)
        try:
            snapshot = self.snapshot()
        except MetricsUnavailable:
            return succeed(None)
        sent: Deferred[Any] = control.callRemote(FinalMetrics, snapshot=snapshot)
        sent.addTimeout(FINAL_TIMEOUT, clock)
        return sent.addBoth(lambda _: None)
