"""
Unit tests of L{twisted_cluster._control.metrics}: the status document, the
Prometheus series and the rate history, on fakes and a L{Clock}.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.observability_fakes import FakeProcess, twoWorkers
from twisted_cluster._control.metrics import RateHistory, clusterRegistry, clusterStatus


def samples(registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    Every sample of C{registry}'s exposition, parsed back from the text.
    """
    text = generate_latest(registry).decode("utf-8")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class RateHistoryTests(SynchronousTestCase):
    def test_ratesAreConnectionsPerSecondOfEachInterval(self) -> None:
        """
        Each sample is the counter's growth over the interval, per second.
        """
        clock, counter = Clock(), [0]
        history = RateHistory(clock, lambda: counter[0], interval=2.0)
        history.start()
        counter[0] = 10
        clock.advance(2)
        counter[0] = 30
        clock.advance(2)
        self.assertEqual(history.rates(), [5.0, 10.0])

    def test_historyKeepsOnlyTheLastSamples(self) -> None:
        """
        The history is bounded: the oldest rates fall off.
        """
        clock, counter = Clock(), [0]
        history = RateHistory(clock, lambda: counter[0], interval=1.0, size=3)
        history.start()
        for value in range(1, 6):
            counter[0] += value
            clock.advance(1)
        self.assertEqual(history.rates(), [3.0, 4.0, 5.0])

    def test_stopEndsSampling(self) -> None:
        """
        After C{stop}, nothing is scheduled on the clock.
        """
        clock = Clock()
        history = RateHistory(clock, lambda: 0)
        history.start()
        history.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


class StatusTests(SynchronousTestCase):
    def test_statusHasOneEntryPerWorkerWithItsFigures(self) -> None:
        """
        Each worker process appears with its id, pid, state, uptime, ping
        figures, dispatch count and round trip.
        """
        clock = Clock()
        clock.advance(100)
        status = clusterStatus(twoWorkers(), clock)
        self.assertEqual(
            status["workers"][0],
            {"id": 1, "pid": 101, "state": "ready", "uptime": 90.0, "restarts": 0,
             "open": 3, "served": 40, "rss": 50_000_000, "dispatched": 43,
             "ping": 0.002},
        )
        self.assertEqual([w["pid"] for w in status["workers"]], [101, 102])

    def test_statusCountsStatesRestartsAndHandoffFailures(self) -> None:
        """
        The cluster part counts workers by state (a replacement that is
        still starting counts too), restarts by cause, and hand-off failures.
        """
        service = twoWorkers()
        assert service.supervisor is not None
        service.supervisor.extra.append(FakeProcess(1, 103, "starting"))
        service.supervisor.restarts.update({"crash": 2, "rollout": 1})
        service.acceptedCount, service.redispatched, service.dropped = 90, 4, 1
        cluster = clusterStatus(service, Clock())["cluster"]
        self.assertEqual(cluster["states"], {"starting": 1, "ready": 2, "draining": 0})
        self.assertEqual(cluster["target"], 2)
        self.assertEqual(
            cluster["restarts"],
            {"crash": 2, "hang": 0, "recycle": 0, "rollout": 1, "startup": 0,
             "kill": 0, "oom": 0},
        )
        self.assertEqual(
            (cluster["accepted"], cluster["redispatched"], cluster["dropped"]), (90, 4, 1)
        )

    def test_statusCarriesTheRateHistory(self) -> None:
        """
        The document holds the sampled rates and the last one as C{rate}.
        """
        clock, service = Clock(), twoWorkers()
        history = RateHistory(clock, service.accepted, interval=1.0)
        history.start()
        service.acceptedCount = 7
        clock.advance(1)
        status = clusterStatus(service, clock, history)
        self.assertEqual(status["history"], {"interval": 1.0, "rates": [7.0]})
        self.assertEqual(status["cluster"]["rate"], 7.0)


class MetricsTests(SynchronousTestCase):
    def test_clusterSeries(self) -> None:
        """
        Workers by state, restarts by cause, accepted connections and
        hand-off failures by outcome are exposed.
        """
        service = twoWorkers()
        assert service.supervisor is not None
        service.supervisor.restarts.update({"hang": 1})
        service.acceptedCount, service.redispatched, service.dropped = 85, 2, 3
        found = samples(clusterRegistry(lambda: clusterStatus(service, Clock())))
        self.assertEqual(found[("twisted_cluster_workers", (("state", "ready"),))], 2)
        self.assertEqual(found[("twisted_cluster_workers_target", ())], 2)
        self.assertEqual(found[("twisted_cluster_restarts_total", (("cause", "hang"),))], 1)
        self.assertEqual(found[("twisted_cluster_restarts_total", (("cause", "crash"),))], 0)
        self.assertEqual(found[("twisted_cluster_connections_accepted_total", ())], 85)
        self.assertEqual(
            found[("twisted_cluster_handoff_failures_total", (("outcome", "redispatched"),))], 2
        )
        self.assertEqual(
            found[("twisted_cluster_handoff_failures_total", (("outcome", "dropped"),))], 3
        )

    def test_perWorkerSeriesAreLabelledByWorkerAndPid(self) -> None:
        """
        Per-worker series carry the worker id and the pid, so that an old
        process and its replacement never share a series.
        """
        service = twoWorkers()
        found = samples(clusterRegistry(lambda: clusterStatus(service, Clock())))
        one = (("pid", "101"), ("worker", "1"))
        self.assertEqual(found[("twisted_cluster_worker_dispatched_connections_total", one)], 43)
        self.assertEqual(found[("twisted_cluster_worker_open_connections", one)], 3)
        self.assertEqual(found[("twisted_cluster_worker_served_connections_total", one)], 40)
        self.assertEqual(found[("twisted_cluster_worker_rss_bytes", one)], 50_000_000)
        self.assertEqual(found[("twisted_cluster_worker_ping_seconds", one)], 0.002)
        self.assertEqual(
            found[("twisted_cluster_worker_state",
                   (("pid", "101"), ("state", "ready"), ("worker", "1")))], 1
        )

    def test_seriesFollowTheLiveState(self) -> None:
        """
        Each scrape reads the cluster anew.
        """
        service = twoWorkers()
        registry = clusterRegistry(lambda: clusterStatus(service, Clock()))
        service.acceptedCount = 1
        samples(registry)
        service.acceptedCount = 2
        self.assertEqual(samples(registry)[("twisted_cluster_connections_accepted_total", ())], 2)

    def test_globalRegistryIsLeftAlone(self) -> None:
        """
        The cluster's collector goes in a registry of its own.
        """
        clusterRegistry(lambda: clusterStatus(twoWorkers(), Clock()))
        self.assertNotIn(b"twisted_cluster_", generate_latest(REGISTRY))
