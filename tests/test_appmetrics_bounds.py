"""
What a worker's app metrics may cost the master and its scrapers, after a
security review: the cluster-wide budget of one render
(L{twisted_cluster._control.appbudget}), a slow render served for longer,
families whose names collide (L{twisted_cluster._control.appseries}), and
a collector that raises (L{twisted_cluster._worker.appmetrics}, the
gatherer's log).  On fakes and a L{Clock}; the exposition is read back with
prometheus_client's parser and, when installed, checked by C{promtool}.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.observability_fakes import twoWorkers
from tests.test_appmetrics import FakeProcess, counter, exposed, gauge, onlyApp
from twisted_cluster import logevents
from twisted_cluster._contract import commands
from twisted_cluster._contract.metricsnapshot import Family, Sample
from twisted_cluster._control import gathering
from twisted_cluster._control.appbudget import (
    MAX_CLUSTER_BYTES,
    MAX_CLUSTER_SAMPLES,
    Budget,
    Size,
    overBudget,
)
from twisted_cluster._control.appseries import AppSeries
from twisted_cluster._control.auth import Access, AccessPolicy
from twisted_cluster._control.gathering import LOG_INTERVAL, MAX_DETAIL, MetricsGatherer
from twisted_cluster._control.metrics import clusterStatus
from twisted_cluster._control.site import controlResource
from twisted_cluster._worker.appmetrics import MAX_REASON, AppMetrics


def gauges(count: int, name: str = "app_wide", width: int = 100) -> Family:
    """
    A gauge family of C{count} samples whose labels are about C{width}
    bytes long, as the review's wide app had.
    """
    return Family(name, "gauge", "Wide.", tuple(
        Sample(name, (("detail", "d" * width), ("key", f"k{n:05d}")), float(n))
        for n in range(count)))


def render(collector: Any) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode("utf-8")


class ValidExpositionMixin:
    """
    Checks that an exposition is one Prometheus accepts whole.
    """

    def assertValidExposition(self, text: str) -> None:
        """
        prometheus_client's parser reads C{text} with one family per name,
        and C{promtool check metrics} (when installed) finds no error in
        it (lint warnings about the app's own naming are its business).
        """
        case: Any = self
        names = [family.name for family in text_string_to_metric_families(text)]
        case.assertEqual(len(names), len(set(names)), names)
        types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
        case.assertEqual(len(types), len(set(types)), types)
        promtool = shutil.which("promtool")
        if promtool is None:
            return
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        case.assertIn(checked.returncode, (0, 3), checked.stderr)
        case.assertNotIn(b"error", checked.stderr + checked.stdout)


class BudgetTests(SynchronousTestCase):
    def test_theLargestSnapshotsAreLeftOut(self) -> None:
        """
        Snapshots are taken smallest first while they fit, in samples and
        in bytes: the one worker that publishes too much loses its series,
        not the others.
        """
        sizes = {(1, 101): Size(4, 100), (2, 102): Size(3, 100), (3, 103): Size(9, 100)}
        self.assertEqual(overBudget(sizes, Budget(samples=10, bytes=1000)), {(3, 103)})
        self.assertEqual(overBudget(sizes, Budget(samples=100, bytes=250)), {(3, 103)})
        self.assertEqual(overBudget(sizes, Budget(samples=100, bytes=1000)), set())

    def test_equalSnapshotsAreLeftOutTheSameWayEachTime(self) -> None:
        """
        Between equal sizes, the higher worker is left out, every time.
        """
        sizes = {(2, 102): Size(5, 10), (1, 101): Size(5, 10)}
        self.assertEqual(overBudget(sizes, Budget(samples=8, bytes=100)), {(2, 102)})


class GatheringBudgetTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def stale(self, **fields: Any) -> list[Any]:
        return [e for e in self.events if e.get("cluster_event") == logevents.APP_METRICS_STALE
                and all(e.get(k) == v for k, v in fields.items())]

    def test_overTheBudgetTheLargestWorkerIsStaleCountedAndLoggedOncePerMinute(self) -> None:
        """
        Past the cluster's budget, the largest snapshot is left out: its
        process is stale (reason C{budget}), the others are served; the
        log says so once per worker per minute.
        """
        small = FakeProcess(1, 101, families=[gauges(2), counter(1)])
        large = FakeProcess(2, 102, families=[gauges(6), counter(5)])
        gatherer = MetricsGatherer(
            self.clock, lambda: [small, large], budget=Budget(samples=8, bytes=10**6))
        for _ in range(3):
            self.successResultOf(gatherer.gather())
        found = exposed(gatherer)
        self.assertEqual(len([k for k in onlyApp(found) if k[0] == "app_wide"]), 2)
        self.assertEqual(found[("app_requests_total", (("worker", "all"),))], 1)
        self.assertEqual(found[("twisted_cluster_scrape_errors_total",
                                (("reason", "budget"), ("worker", "2")))], 3)
        self.assertEqual(found[("twisted_cluster_app_metrics_fresh",
                                (("pid", "102"), ("worker", "2")))], 0)
        self.assertEqual(len(self.stale(worker_id=2, worker_pid=102, cause="budget")), 1)
        self.clock.advance(LOG_INTERVAL)
        self.successResultOf(gatherer.gather())
        [_, again] = self.stale(worker_id=2, cause="budget")
        self.assertEqual(again["held"], 2)
        self.assertEqual(self.stale(worker_id=1), [])

    def test_aSnapshotLargerThanTheWholeBudgetIsNotDecoded(self) -> None:
        """
        A snapshot of more bytes than the cluster's whole budget is left
        out before it costs the master a decoding.
        """
        large = FakeProcess(1, 101, families=[gauges(50)])
        gatherer = MetricsGatherer(self.clock, lambda: [large], budget=Budget(bytes=1000))
        decoded: list[bytes] = []
        self.patch(gathering, "decodeSnapshot", decoded.append)
        self.successResultOf(gatherer.gather())
        self.assertEqual(decoded, [])
        self.assertEqual(gatherer.errors[(1, "budget")], 1)

    def test_aWorkerOverTheBudgetKeepsItsLastCountsInTheClusterTotal(self) -> None:
        """
        A worker whose snapshot no longer fits is stale: the cluster total
        keeps what it had counted (it never goes backwards).
        """
        one = FakeProcess(1, 101, families=[counter(3)])
        two = FakeProcess(2, 102, families=[counter(4)])
        gatherer = MetricsGatherer(
            self.clock, lambda: [one, two], budget=Budget(samples=5, bytes=10**6))
        self.successResultOf(gatherer.gather())
        two.families = [counter(6), gauges(10)]
        self.successResultOf(gatherer.gather())
        found = onlyApp(exposed(gatherer))
        self.assertEqual(found[("app_requests_total", (("worker", "all"),))], 7)
        self.assertNotIn(("app_requests_total", (("worker", "2"),)), found)

    def test_theReviewsWideWorkersNoLongerMakeAHugeRender(self) -> None:
        """
        Two workers of thousands of wide gauges each, within their own
        bounds: with the default budget the render stays under it (the
        largest is left out) and is valid.
        """
        processes = [FakeProcess(1, 101, families=[gauges(6000)]),
                     FakeProcess(2, 102, families=[gauges(6000)]),
                     FakeProcess(3, 103, families=[counter(1)])]
        gatherer = MetricsGatherer(self.clock, lambda: processes)
        self.successResultOf(gatherer.gather())
        text = render(gatherer)
        self.assertLess(len(text), MAX_CLUSTER_BYTES)
        wide = [line for line in text.splitlines() if line.startswith("app_wide{")]
        self.assertEqual(len(wide), 6000)
        self.assertLessEqual(len(wide), MAX_CLUSTER_SAMPLES)
        self.assertIn('app_requests_total{worker="all"} 1.0', text)
        self.assertEqual([e["worker_id"] for e in self.stale(cause="budget")], [2])


class SlowRenderTests(SynchronousTestCase):
    """
    C{/metrics} serves a slow render again for longer.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.service = twoWorkers()
        clock, self.renders = self.clock, []

        class SlowGatherer(MetricsGatherer):
            def collect(inner) -> Iterator[Any]:
                self.renders.append(clock.seconds())
                clock.advance(0.5)
                yield from super().collect()

        self.gatherer = SlowGatherer(self.clock, lambda: [])
        access = Access(AccessPolicy("t", os.getuid()), self.clock)
        root = controlResource(self.service, lambda: clusterStatus(self.service, self.clock),
                               access, self.clock, self.gatherer)
        self.metrics = root.children[b"metrics"]

    def scrape(self) -> Any:
        request = DummyRequest([])
        request.client = IPv4Address("TCP", "127.0.0.1", 40000)
        request.requestHeaders.addRawHeader(b"authorization", b"Bearer t")
        return self.metrics.render(request)

    def test_aRenderThatTookHalfASecondIsServedForFive(self) -> None:
        """
        A render of 0.5 s is served again for 5 s (ten times as long), not
        rendered afresh every second: a scraper takes the master's reactor
        for a tenth of its time at most.
        """
        first = self.scrape()
        self.assertEqual(self.renders, [0.0])
        self.clock.advance(4.0)
        self.assertEqual(self.scrape(), first)
        self.assertEqual(self.renders, [0.0])
        self.clock.advance(1.0)
        self.scrape()
        self.assertEqual(self.renders, [0.0, 5.5])


class ConflictTests(ValidExpositionMixin, SynchronousTestCase):
    def test_aCounterAndAGaugeOfOneSampleNameInOneWorker(self) -> None:
        """
        A counter C{dup} (sample C{dup_total}) and a gauge C{dup_total}:
        the first is kept, the other dropped and named, and the exposition
        stays valid.
        """
        series = AppSeries()
        dropped = series.update((1, 101), [counter(2, name="dup"), gauge(9, name="dup_total")])
        self.assertEqual(dropped, ["dup_total"])
        text = render(series)
        self.assertValidExposition(text)
        self.assertEqual(onlyApp(exposed(series)), {
            ("dup_total", (("worker", "1"),)): 2, ("dup_total", (("worker", "all"),)): 2})

    def test_collidingFamiliesOfTwoWorkers(self) -> None:
        """
        Across workers too: the family held first keeps its names, a
        histogram's C{_count} included; a family of the same name but
        another type is dropped.
        """
        histogram = Family("size", "histogram", "", (
            Sample("size_bucket", (("le", "+Inf"),), 2), Sample("size_count", (), 2),
            Sample("size_sum", (), 3)))
        series = AppSeries()
        self.assertEqual(series.update((1, 101), [counter(1, name="dup"), histogram,
                                                  gauge(1, name="temp")]), [])
        self.assertEqual(
            series.update((2, 102), [gauge(9, name="dup_total"), gauge(2, name="size_count"),
                                     counter(3, name="temp"), counter(4, name="ok")]),
            ["dup_total", "size_count", "temp"])
        self.assertValidExposition(render(series))
        found = onlyApp(exposed(series))
        self.assertEqual(found[("ok_total", (("worker", "all"),))], 4)
        self.assertEqual(found[("temp", (("pid", "101"), ("worker", "1")))], 1)

    def test_whatAGoneWorkerCountedKeepsItsNames(self) -> None:
        """
        A gone worker's counter still shows in C{worker="all"}: a gauge
        of a later worker under its sample's name is dropped.
        """
        series = AppSeries()
        series.update((1, 101), [counter(5, name="dup")])
        series.retire((1, 101), final=[counter(6, name="dup"), gauge(1, name="late_total"),
                                       gauge(1, name="late")])
        self.assertEqual(series.update((2, 102), [gauge(9, name="dup_total")]), ["dup_total"])
        self.assertValidExposition(render(series))
        self.assertEqual(onlyApp(exposed(series))[("dup_total", (("worker", "all"),))], 6)

    def test_aNameIsFreeAgainWhenNoLiveProcessHoldsIt(self) -> None:
        """
        A gauge that a worker no longer publishes gives its name up.
        """
        series = AppSeries()
        series.update((1, 101), [gauge(1, name="mode")])
        series.update((1, 101), [])
        self.assertEqual(series.update((2, 102), [counter(1, name="mode")]), [])

    def test_theGathererCountsAndLogsConflicts(self) -> None:
        """
        A worker whose families collide with another's is counted
        (reason C{conflict}) and logged once a minute, with its id, pid
        and the families left out; its other series are served.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        clock = Clock()
        first = FakeProcess(1, 101, families=[counter(1, name="dup")])
        second = FakeProcess(2, 102, families=[gauge(2, name="dup_total"), gauge(3)])
        gatherer = MetricsGatherer(clock, lambda: [first, second])
        self.successResultOf(gatherer.gather())
        self.successResultOf(gatherer.gather())
        found = exposed(gatherer)
        self.assertEqual(found[("twisted_cluster_scrape_errors_total",
                                (("reason", "conflict"), ("worker", "2")))], 2)
        self.assertEqual(found[("app_in_flight", (("pid", "102"), ("worker", "2")))], 3)
        self.assertValidExposition(render(gatherer))
        [event] = [e for e in events
                   if e.get("cluster_event") == logevents.APP_METRICS_CONFLICT]
        self.assertEqual((event["worker_id"], event["worker_pid"], event["cause"]),
                         (2, 102, "conflict"))
        self.assertIn("dup_total", event["families"])


class FailingCollectorTests(SynchronousTestCase):
    def test_theWorkerLogsAFailingCollectorOncePerMinute(self) -> None:
        """
        A collector that raises at every scrape is logged, with its
        traceback, once a minute, saying how many were held back; each
        answer is still a L{MetricsUnavailable}, its text cut short.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

        class Broken:
            def collect(self) -> Any:
                raise RuntimeError("boom " * 1000)

        clock = Clock()
        metrics = AppMetrics(1, Broken(), clock=clock)
        for _ in range(5):
            with self.assertRaises(commands.MetricsUnavailable) as caught:
                metrics.snapshot()
            self.assertLessEqual(len(str(caught.exception)), MAX_REASON)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        clock.advance(60)
        self.assertRaises(commands.MetricsUnavailable, metrics.snapshot)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        failed = [e for e in events if e.get("cluster_event") == logevents.APP_METRICS_FAILED]
        self.assertEqual([(e["worker_id"], e["held"]) for e in failed], [(1, 0), (1, 4)])

    def test_theMasterLogsAWorkersErrorTextOnOneShortLine(self) -> None:
        """
        The text of a worker's L{MetricsUnavailable} is untrusted: the
        master logs it with its line breaks and control characters escaped,
        and cut.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        process = FakeProcess(1, 101)
        text = 'RuntimeError: boom\nsecond line\x1b[2J' + "x" * 1000
        process.callRemote = (  # type: ignore[method-assign]
            lambda command: fail(commands.MetricsUnavailable(text)))
        gatherer = MetricsGatherer(Clock(), lambda: [process])
        self.successResultOf(gatherer.gather())
        [event] = [e for e in events if e.get("cluster_event") == logevents.APP_METRICS_STALE]
        self.assertEqual((event["worker_id"], event["cause"]), (1, "failed"))
        self.assertNotIn("\n", formatEvent(event))
        self.assertNotIn("\x1b", formatEvent(event))
        self.assertIn("boom\\x0asecond line\\x1b[2J", event["detail"])
        self.assertLessEqual(len(event["detail"]), MAX_DETAIL + 3)
