"""
Unit tests of the cluster's application metrics: the snapshot format
(L{twisted_cluster._contract.metricsnapshot}), the merge of every worker's
families (L{twisted_cluster._control.appseries}), the gathering at scrape
time (L{twisted_cluster._control.gathering}) and the worker's side
(L{twisted_cluster._worker.appmetrics}), on fakes and a L{Clock}.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attr
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from tests.fakes import RecordingHandoffObserver, stateNamed
from tests.observability_fakes import FakeProcess as StatusProcess
from tests.observability_fakes import twoWorkers
from twisted_cluster import ClusterApp
from twisted_cluster._contract import commands
from twisted_cluster._contract.metricsnapshot import (
    MAX_BYTES,
    MAX_SAMPLES,
    Family,
    Sample,
    SnapshotError,
    decodeSnapshot,
    encodeSnapshot,
)
from twisted_cluster._contract.workerconfig import WorkerConfig
from twisted_cluster._control.appseries import AppSeries
from twisted_cluster._control.auth import Access, AccessPolicy
from twisted_cluster._control.gathering import MetricsGatherer
from twisted_cluster._control.metrics import clusterStatus
from twisted_cluster._control.site import controlResource
from twisted_cluster._supervision.process import (
    READY,
    IWorkerProcess,
    WorkerProcess,
    WorkerState,
)
from twisted_cluster._worker.appmetrics import AppMetrics
from twisted_cluster.apploading import AppLoadError, checkApp

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def counter(value: float, name: str = "app_requests", **labels: str) -> Family:
    """
    A counter family with one sample.
    """
    return Family(name, "counter", "Requests.",
                  (Sample(name + "_total", tuple(sorted(labels.items())), value),))


def gauge(value: float, name: str = "app_in_flight") -> Family:
    return Family(name, "gauge", "In flight.", (Sample(name, (), value),))


def exposed(collector: Any) -> Samples:
    """
    Every sample C{collector} exposes, parsed back by prometheus_client's
    own text parser.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode("utf-8")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def onlyApp(samples: Samples) -> Samples:
    return {k: v for k, v in samples.items() if not k[0].startswith("twisted_cluster_")}


class SnapshotFormatTests(SynchronousTestCase):
    def test_familiesSurviveTheWire(self) -> None:
        """
        What a worker encodes, the master decodes as it was.
        """
        families = [counter(3.0, path="/"), gauge(2.0)]
        self.assertEqual(decodeSnapshot(encodeSnapshot(families)).families, families)

    def test_unknownKeysAreIgnored(self) -> None:
        """
        A newer worker may send more keys; the master reads what it knows.
        """
        document = json.loads(encodeSnapshot([gauge(1.0)]))
        document["version"] = 2
        document["compressed"] = False
        document["families"][0]["unit"] = "seconds"
        self.assertEqual(decodeSnapshot(json.dumps(document).encode()).families, [gauge(1.0)])

    def refused(self, document: Any) -> str:
        data = document if isinstance(document, bytes) else json.dumps(document).encode()
        with self.assertRaises(SnapshotError) as caught:
            decodeSnapshot(data).families
        return str(caught.exception)

    def family(self, **changes: Any) -> dict[str, Any]:
        family = {"name": "x", "type": "gauge", "help": "", "samples": [["x", {}, 1]]}
        family.update(changes)
        return {"families": [family]}

    def test_whatAnUntrustedWorkerSendsIsChecked(self) -> None:
        """
        Bad JSON, names outside Prometheus' grammar, samples not of their
        family, reserved label names, values that are no numbers, an
        unknown type, buckets and quantiles without their bound (which
        would make Prometheus refuse the whole scrape) and a family given
        twice are refused, whole.
        """
        self.assertIn("not JSON", self.refused(b"{"))
        self.assertIn("no list of families", self.refused([1]))
        self.assertIn("family name", self.refused(self.family(name="x y")))
        self.assertIn("unknown type", self.refused(self.family(type="bogus")))
        self.assertIn("is not of", self.refused(self.family(samples=[["y", {}, 1]])))
        self.assertIn("reserved", self.refused(self.family(samples=[["x", {"__a": "1"}, 1]])))
        self.assertIn("label name", self.refused(self.family(samples=[["x", {"a-b": "1"}, 1]])))
        self.assertIn("not a number", self.refused(self.family(samples=[["x", {}, True]])))
        self.assertIn("not a number", self.refused(self.family(samples=[["x", {}, "1"]])))
        bucket = self.family(type="histogram", samples=[["x_bucket", {}, 1]])
        self.assertIn("le label", self.refused(bucket))
        quantile = self.family(type="summary", samples=[["x", {"quantile": "high"}, 1]])
        self.assertIn("quantile label", self.refused(quantile))
        twice = {"families": self.family()["families"] * 2}
        self.assertIn("twice", self.refused(twice))

    def test_sizeAndSeriesAreBounded(self) -> None:
        """
        A snapshot over L{MAX_BYTES} or with more than L{MAX_SAMPLES}
        samples is refused before it costs more.
        """
        self.assertIn("bytes", self.refused(b" " * (MAX_BYTES + 1)))
        many = self.family(samples=[["x", {"i": str(i)}, 1] for i in range(MAX_SAMPLES + 1)])
        self.assertIn("samples", self.refused(many))


class MergeTests(SynchronousTestCase):
    def test_countersArePerSlotAndSummedForTheCluster(self) -> None:
        """
        Each worker's counter gets its C{worker} label; C{worker="all"} is
        their sum.
        """
        series = AppSeries()
        series.update((1, 101), [counter(3, path="/")])
        series.update((2, 102), [counter(4, path="/")])
        found = onlyApp(exposed(series))
        self.assertEqual(found, {
            ("app_requests_total", (("path", "/"), ("worker", "1"))): 3,
            ("app_requests_total", (("path", "/"), ("worker", "2"))): 4,
            ("app_requests_total", (("path", "/"), ("worker", "all"))): 7,
        })

    def test_aGoneWorkersCountsAreKeptAndItsReplacementContinuesThem(self) -> None:
        """
        When a worker process is gone, what it counted stays in its slot;
        the replacement in the same slot adds to it: neither the slot's
        series nor the cluster's total goes backwards.
        """
        series = AppSeries()
        series.update((1, 101), [counter(10)])
        series.update((2, 102), [counter(5)])
        series.retire((1, 101))
        series.update((1, 103), [counter(2)])
        found = onlyApp(exposed(series))
        self.assertEqual(found[("app_requests_total", (("worker", "1"),))], 12)
        self.assertEqual(found[("app_requests_total", (("worker", "all"),))], 17)

    def test_theFinalSnapshotReplacesTheLastScraped(self) -> None:
        """
        A process that sent its final snapshot as it exited is kept at that
        value, not at its last scraped one.
        """
        series = AppSeries()
        series.update((1, 101), [counter(10)])
        series.retire((1, 101), final=[counter(15)])
        self.assertEqual(onlyApp(exposed(series)),
                         {("app_requests_total", (("worker", "1"),)): 15,
                          ("app_requests_total", (("worker", "all"),)): 15})

    def test_aFinalSnapshotCannotTakeACountBack(self) -> None:
        """
        A final snapshot lower than the last scrape (sent early by a worker
        that is not ours) does not make the slot's count go backwards; a
        family only the last scrape had is kept.
        """
        series = AppSeries()
        series.update((1, 101), [counter(10), counter(4, name="other")])
        series.retire((1, 101), final=[counter(6)])
        found = onlyApp(exposed(series))
        self.assertEqual(found[("app_requests_total", (("worker", "all"),))], 10)
        self.assertEqual(found[("other_total", (("worker", "all"),))], 4)

    def test_removedSlotsStayInTheClusterTotal(self) -> None:
        """
        A slot removed for good keeps its series and its part of the total.
        """
        series = AppSeries()
        series.update((3, 103), [counter(8)])
        series.retire((3, 103))
        self.assertEqual(onlyApp(exposed(series))[("app_requests_total", (("worker", "all"),))], 8)

    def test_gaugesArePerLiveProcessOnly(self) -> None:
        """
        Gauges carry C{worker} and C{pid}, are not summed, and go with their
        process: during a roll-out, old and new process of a slot each
        show theirs.
        """
        series = AppSeries()
        series.update((1, 101), [gauge(2)])
        series.update((1, 103), [gauge(1)])
        self.assertEqual(onlyApp(exposed(series)), {
            ("app_in_flight", (("pid", "101"), ("worker", "1"))): 2,
            ("app_in_flight", (("pid", "103"), ("worker", "1"))): 1,
        })
        series.retire((1, 101))
        self.assertEqual(list(onlyApp(exposed(series))),
                         [("app_in_flight", (("pid", "103"), ("worker", "1")))])

    def test_histogramsSumBucketsAndSummariesKeepQuantilesPerProcess(self) -> None:
        """
        Histogram buckets, counts and sums are summed like counters; a
        summary's count and sum too, its quantiles stay per process.
        """
        histogram = Family("size", "histogram", "", (
            Sample("size_bucket", (("le", "10.0"),), 1),
            Sample("size_bucket", (("le", "+Inf"),), 2),
            Sample("size_count", (), 2), Sample("size_sum", (), 30)))
        summary = Family("lat", "summary", "", (
            Sample("lat", (("quantile", "0.5"),), 0.1),
            Sample("lat_count", (), 4), Sample("lat_sum", (), 0.8)))
        series = AppSeries()
        series.update((1, 101), [histogram, summary])
        series.update((2, 102), [histogram, summary])
        found = onlyApp(exposed(series))
        self.assertEqual(found[("size_bucket", (("le", "+Inf"), ("worker", "all")))], 4)
        self.assertEqual(found[("size_sum", (("worker", "all"),))], 60)
        self.assertEqual(found[("lat_count", (("worker", "all"),))], 8)
        self.assertEqual(found[("lat", (("pid", "102"), ("quantile", "0.5"), ("worker", "2")))],
                         0.1)
        self.assertNotIn(("lat", (("quantile", "0.5"), ("worker", "all"))), found)

    def test_aStaleProcessIsLeftOutButStillCountsForTheCluster(self) -> None:
        """
        A process that did not answer this scrape: its series and its
        slot's are left out (Prometheus marks them stale), the cluster
        total keeps its last known count.
        """
        series = AppSeries()
        series.update((1, 101), [counter(3), gauge(1)])
        series.update((2, 102), [counter(4), gauge(1)])
        series.newScrape()
        series.update((1, 101), [counter(5), gauge(1)])
        series.stale((2, 102))
        self.assertEqual(onlyApp(exposed(series)), {
            ("app_requests_total", (("worker", "1"),)): 5,
            ("app_requests_total", (("worker", "all"),)): 9,
            ("app_in_flight", (("pid", "101"), ("worker", "1"))): 1,
        })

    def test_clashingLabelsAreRenamedAndTheMastersNamesReserved(self) -> None:
        """
        An app label C{worker} becomes C{exported_worker}; a family named
        like the master's own (C{process_*}, C{twisted_cluster_*}) is left
        out, so that a worker cannot pass for the master.
        """
        series = AppSeries()
        series.update((1, 101), [
            counter(1, worker="mine"),
            gauge(9, name="process_open_fds"),
            gauge(9, name="twisted_cluster_workers"),
        ])
        self.assertEqual(onlyApp(exposed(series)), {
            ("app_requests_total", (("exported_worker", "mine"), ("worker", "1"))): 1,
            ("app_requests_total", (("exported_worker", "mine"), ("worker", "all"))): 1,
        })

    def test_whatGoneProcessesLeaveIsBounded(self) -> None:
        """
        Label values that change with every process cannot make the master
        keep ever more: a slot's kept samples stop at the limit.
        """
        series = AppSeries(retainedLimit=2)
        for pid in range(100, 105):
            series.update((1, pid), [counter(1, session=str(pid))])
            series.retire((1, pid))
        self.assertEqual(len(onlyApp(exposed(series))), 4)  # 2 kept, 2 in all


@attr.s(auto_attribs=True, eq=False)
class FakeProcess(StatusProcess):
    """
    A worker process as the control site reads it, which answers
    L{CollectMetrics} with C{families}, or leaves the call unanswered when
    C{hung}.
    """

    state: WorkerState = attr.ib(default=READY, converter=stateNamed)
    families: list[Family] = attr.ib(factory=list)
    control: Any = "a channel"
    finalMetrics: bytes | None = None
    hung: bool = False
    calls: list[Deferred[Any]] = attr.ib(factory=list)

    def callRemote(self, command: Any, **arguments: Any) -> Deferred[Any]:
        assert command is commands.CollectMetrics
        d: Deferred[Any] = Deferred() if self.hung else succeed(
            {"snapshot": encodeSnapshot(self.families)})
        self.calls.append(d)
        return d


class GatheringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.processes: list[FakeProcess] = []
        self.gatherer = MetricsGatherer(self.clock, lambda: self.processes, timeout=1.0)

    def test_fakeReadsLikeAWorkerProcess(self) -> None:
        """
        The fake and the real L{WorkerProcess} both have what the gatherer
        reads.
        """
        verifyObject(IWorkerProcess, FakeProcess(1, 101))
        real = WorkerProcess(
            MemoryReactorClock(), 1, WorkerConfig(1, None, (), ()), "python",
            lambda p: None, RecordingHandoffObserver(), lambda: [],
        )
        real.pid = 101
        verifyObject(IWorkerProcess, real)

    def test_aHungWorkerIsStaleAfterTheTimeoutAndTheRestIsServed(self) -> None:
        """
        A worker that does not answer holds the gathering up for the
        time-out only; it is counted in C{twisted_cluster_scrape_errors},
        marked not fresh, and its last known count stays in the total.
        """
        one = FakeProcess(1, 101, families=[counter(3)])
        two = FakeProcess(2, 102, families=[counter(4)])
        self.processes = [one, two]
        self.gatherer.gather()
        two.hung = True
        one.families = [counter(5)]
        done = self.gatherer.gather()
        self.assertNoResult(done)
        self.clock.advance(1.0)
        self.successResultOf(done)
        found = exposed(self.gatherer)
        self.assertEqual(found[("app_requests_total", (("worker", "1"),))], 5)
        self.assertNotIn(("app_requests_total", (("worker", "2"),)), found)
        self.assertEqual(found[("app_requests_total", (("worker", "all"),))], 9)
        self.assertEqual(
            found[("twisted_cluster_scrape_errors_total", (("reason", "timeout"), ("worker", "2")))],
            1)
        self.assertEqual(found[("twisted_cluster_app_metrics_fresh", (("pid", "102"), ("worker", "2")))], 0)
        self.assertEqual(found[("twisted_cluster_app_metrics_fresh", (("pid", "101"), ("worker", "1")))], 1)
        self.assertEqual(found[("twisted_cluster_app_metrics_gather_seconds", ())], 1.0)

    def test_aHungWorkerIsNotAskedAgainUntilItAnswers(self) -> None:
        """
        One request at most waits on a worker: scraping a hung worker every
        second does not pile requests up on it.
        """
        hung = FakeProcess(1, 101, hung=True)
        self.processes = [hung]
        self.gatherer.gather()
        self.clock.advance(1.0)
        self.successResultOf(self.gatherer.gather())
        self.assertEqual(len(hung.calls), 1)
        hung.calls[0].callback({"snapshot": encodeSnapshot([])})
        hung.hung = False
        self.gatherer.gather()
        self.assertEqual(len(hung.calls), 2)

    def test_scrapesDuringAGatheringShareIt(self) -> None:
        """
        Scrapes that arrive while a gathering runs wait for it: the workers
        are asked once.
        """
        hung = FakeProcess(1, 101, hung=True)
        self.processes = [hung]
        first, second = self.gatherer.gather(), self.gatherer.gather()
        self.assertEqual(len(hung.calls), 1)
        hung.calls[0].callback({"snapshot": encodeSnapshot([counter(1)])})
        self.successResultOf(first)
        self.successResultOf(second)

    def test_startingWorkersAreNotAsked(self) -> None:
        """
        A worker still loading its app has no metrics yet.
        """
        starting = FakeProcess(1, 101, state="starting")
        self.processes = [starting]
        self.successResultOf(self.gatherer.gather())
        self.assertEqual(starting.calls, [])

    def test_aGoneWorkerIsRetiredWithItsFinalSnapshot(self) -> None:
        """
        A worker no longer among the processes is retired at the next
        gathering, at the value of the snapshot it sent as it exited.
        """
        old = FakeProcess(1, 101, families=[counter(3)])
        self.processes = [old]
        self.gatherer.gather()
        old.finalMetrics = encodeSnapshot([counter(7)])
        self.processes = [FakeProcess(1, 103, families=[counter(1)])]
        self.gatherer.gather()
        found = exposed(self.gatherer)
        self.assertEqual(found[("app_requests_total", (("worker", "1"),))], 8)
        self.assertEqual(found[("app_requests_total", (("worker", "all"),))], 8)

    def test_refusedAndFailedAnswersAreCountedByReason(self) -> None:
        """
        A snapshot over the bounds is refused, an error of the app's
        collector is a failure; both leave the worker stale.
        """
        bad = FakeProcess(1, 101)
        bad.callRemote = lambda command: succeed({"snapshot": b"not json"})  # type: ignore[method-assign]
        broken = FakeProcess(2, 102)
        broken.callRemote = (  # type: ignore[method-assign]
            lambda command: fail(commands.MetricsUnavailable("RuntimeError: broken")))
        self.processes = [bad, broken]
        self.successResultOf(self.gatherer.gather())
        self.assertEqual(dict(self.gatherer.errors), {(1, "refused"): 1, (2, "failed"): 1})
        self.assertEqual(len(self.flushLoggedErrors()), 0)


class MetricsResourceTests(SynchronousTestCase):
    """
    C{/metrics} of the control site with workers that publish app metrics.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.service = twoWorkers()
        assert self.service.supervisor is not None
        self.hung = FakeProcess(3, 103, families=[counter(2)])
        self.service.supervisor.extra.append(self.hung)
        access = Access(AccessPolicy("t", os.getuid()), self.clock)
        root = controlResource(
            self.service, lambda: clusterStatus(self.service, self.clock), access, self.clock)
        self.metrics = root.children[b"metrics"]

    def scrape(self) -> tuple[Any, DummyRequest]:
        request = DummyRequest([])
        request.client = IPv4Address("TCP", "127.0.0.1", 40000)
        request.requestHeaders.addRawHeader(b"authorization", b"Bearer t")
        return self.metrics.render(request), request

    def test_aScrapeWaitsForAHungWorkerOnlyUntilTheTimeout(self) -> None:
        """
        With a worker that does not answer, the scrape is answered when the
        time-out expires, with the cluster's series, the others' and the
        error.
        """
        self.clock.advance(5)
        self.hung.hung = True
        body, request = self.scrape()
        self.assertEqual(body, NOT_DONE_YET)
        self.assertEqual(request.finished, 0)
        self.clock.advance(1.0)
        self.assertEqual(request.finished, 1)
        text = b"".join(request.written)
        self.assertIn(b'twisted_cluster_workers{state="ready"} 3.0', text)
        self.assertIn(b'twisted_cluster_scrape_errors_total{reason="timeout",worker="3"} 1.0',
                      text)

    def test_answeringWorkersAreScrapedAtOnce(self) -> None:
        """
        When every worker answers at once, so does the scrape, with the app's
        series.
        """
        body, request = self.scrape()
        self.assertIn(b'app_requests_total{worker="all"} 2.0', body)

    def test_aClientGoneBeforeTheAnswerGetsNothingWritten(self) -> None:
        """
        A scraper that hung up while the workers were asked is not written
        to.
        """
        self.hung.hung = True
        body, request = self.scrape()
        request.processingFailed(Failure(ConnectionDone()))
        self.clock.advance(1.0)
        self.assertEqual(request.written, [])


class StatusPageTests(SynchronousTestCase):
    """
    The app's figures that the status page shows (C{statusSeries}).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        requests = Family("app_requests", "counter", "", (
            Sample("app_requests_total", (("path", "/"),), 2),
            Sample("app_requests_total", (("path", "/a"),), 3)))
        self.process = FakeProcess(1, 101, families=[requests])
        self.gatherer = MetricsGatherer(self.clock, lambda: [self.process])

    def answerNaming(self, *names: str) -> None:
        self.process.callRemote = lambda command: succeed(  # type: ignore[method-assign]
            {"snapshot": encodeSnapshot(self.process.families, names)})

    def test_namedSamplesAreSummedOverTheirLabels(self) -> None:
        """
        A worker's figures for the page are each named sample's sum over
        its labels, in the status document's row as C{app}.
        """
        self.answerNaming("app_requests_total")
        self.successResultOf(self.gatherer.gather())
        service = twoWorkers()
        assert service.supervisor is not None
        service.supervisor.slots = {1: self.process}
        status = clusterStatus(
            service, self.clock,
            appFigures=lambda p: self.gatherer.series.figures((p.workerId, p.pid)))
        self.assertEqual(status["workers"][0]["app"], {"app_requests_total": 5.0})

    def test_rowsHaveNoAppFiguresUnlessTheAppNamesSome(self) -> None:
        """
        Without C{statusSeries}, rows are as they were.
        """
        self.successResultOf(self.gatherer.gather())
        self.assertEqual(self.gatherer.series.figures((1, 101)), {})

    def test_thePageRefreshesAtMostOncePerSecondAndOnlyWhenAsked(self) -> None:
        """
        Polling C{/status.json} gathers at most once a second, and not at
        all (after a first look) when no worker names series for the page.
        """
        self.answerNaming("app_requests_total")
        calls = []
        answer = self.process.callRemote
        self.process.callRemote = lambda command: calls.append(1) or answer(command)  # type: ignore[method-assign]
        for _ in range(3):
            self.gatherer.refresh()
        self.assertEqual(len(calls), 1)
        self.clock.advance(1.0)
        self.gatherer.refresh()
        self.assertEqual(len(calls), 2)
        quiet = MetricsGatherer(self.clock, lambda: [FakeProcess(2, 102, calls=[])])
        quiet.refresh()
        self.clock.advance(5)
        quiet.refresh()
        self.assertEqual(self.process.calls, [])


class WorkerSideTests(SynchronousTestCase):
    def test_snapshotHasTheRegistrysFamiliesWithoutCreatedSamples(self) -> None:
        """
        The worker sends its registry's families, without the per-process
        C{_created} samples.
        """
        registry = CollectorRegistry()
        Counter("hits", "Hits.", ["path"], registry=registry).labels(path="/").inc(2)
        Gauge("temp", "Temperature.", registry=registry).set(21.5)
        Histogram("size", "Sizes.", buckets=(1,), registry=registry).observe(0.5)
        Summary("lat", "Latency.", registry=registry).observe(0.1)
        snapshot = AppMetrics(1, registry, clock=Clock()).snapshot()
        families = {f.name: f for f in decodeSnapshot(snapshot).families}
        self.assertEqual(families["hits"].samples, (Sample("hits_total", (("path", "/"),), 2.0),))
        self.assertEqual(families["temp"].samples, (Sample("temp", (), 21.5),))
        self.assertEqual({s.name for s in families["size"].samples},
                         {"size_bucket", "size_count", "size_sum"})
        self.assertEqual({s.name for s in families["lat"].samples}, {"lat_count", "lat_sum"})

    def test_aFailingCollectorIsReportedNotRaised(self) -> None:
        """
        A collector of the app that raises makes the answer a
        L{MetricsUnavailable} that says why, and is logged in the worker.
        """
        class Broken:
            def collect(self) -> Any:
                raise RuntimeError("no")

        with self.assertRaises(commands.MetricsUnavailable) as caught:
            AppMetrics(1, Broken(), clock=Clock()).snapshot()
        self.assertIn("RuntimeError: no", str(caught.exception))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_theFinalSnapshotGoesToTheMasterBoundedInTime(self) -> None:
        """
        As it exits, the worker sends its last snapshot; when the master
        does not answer, it exits anyway after the time-out.
        """
        registry = CollectorRegistry()
        Counter("hits", "Hits.", registry=registry).inc(4)
        clock, sent = Clock(), []

        class Control:
            transport = "connected"

            def callRemote(self, command: Any, **arguments: Any) -> Deferred[Any]:
                sent.append((command, decodeSnapshot(arguments["snapshot"]).families))
                return Deferred()

        done = AppMetrics(1, registry, clock=clock).sendFinal(Control(), clock)
        [(command, families)] = sent
        self.assertIs(command, commands.FinalMetrics)
        self.assertEqual(families[0].samples[0].value, 4.0)
        self.assertNoResult(done)
        clock.advance(1.0)
        self.successResultOf(done)

    def test_noFinalSnapshotWithoutAChannel(self) -> None:
        """
        A worker whose master is gone exits at once.
        """
        registry = CollectorRegistry()
        self.successResultOf(AppMetrics(1, registry, clock=Clock()).sendFinal(None, Clock()))

    def test_aNamedRegistryMustCollect(self) -> None:
        """
        A L{ClusterApp} whose C{metricsRegistry} is no registry fails to
        load with one line.
        """
        app = ClusterApp(app=lambda: None, metricsRegistry="nope")
        with self.assertRaises(AppLoadError) as caught:
            checkApp(app, "mod.app")
        self.assertIn("metricsRegistry", str(caught.exception))

    def test_statusSeriesMustBeAFewMetricNames(self) -> None:
        """
        More than 4 names for the status page, or a name that is none, fail
        to load with one line.
        """
        for names in (("a", "b", "c", "d", "e"), ("not a name",)):
            with self.assertRaises(AppLoadError) as caught:
                checkApp(ClusterApp(app=lambda: None, statusSeries=names), "mod.app")
            self.assertIn("statusSeries", str(caught.exception))
