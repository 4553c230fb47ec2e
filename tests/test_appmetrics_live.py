"""
Integration tests of the app's own metrics on a real cluster: an app that
counts its requests with C{prometheus_client} in 3 workers, scraped on the
master's C{/metrics} and read back with prometheus_client's own parser
(and, when Debian's C{prometheus} is installed, by a real Prometheus).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Any
from urllib.parse import quote

import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.support import (
    ROOT,
    TWIST,
    ClusterProcess,
    pidAlive,
    shortTempDir,
    sleep,
    testEnvironment,
    waitUntil,
)
from twisted_cluster import logevents

#: The counting app, figures fast, the control site on 127.0.0.1.
APP = ("--app", "tests.apps.counting.resource", "--health-interval", "0.2",
       "--control", "tcp:0:interface=127.0.0.1")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def control(cluster: ClusterProcess) -> tuple[str, str]:
    """
    The control site's address and token, from the master's log.
    """
    [site] = cluster.logged(logevents.CONTROL_LISTENING)
    [written] = cluster.logged(logevents.CONTROL_TOKEN_WRITTEN)
    with open(written["token_file"]) as f:
        return str(site["address"]), f.read().strip()


async def get(url: str, token: str | None = None) -> bytes:
    pool = HTTPConnectionPool(reactor, persistent=False)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await treq.get(url, headers=headers, pool=pool, timeout=10)
    assert response.code == 200, response.code
    return bytes(await response.content())


async def scrape(cluster: ClusterProcess) -> Samples:
    """
    The master's C{/metrics}, parsed by prometheus_client's text parser,
    rendered afresh (the master caches a rendering for a second).
    """
    await sleep(1.05)
    address, token = control(cluster)
    text = (await get(address + "metrics", token)).decode("utf-8")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests(samples: Samples, worker: str) -> float:
    return samples.get(("app_requests_total", (("path", "/"), ("worker", worker))), 0.0)


def perWorker(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["worker"]: value for (name, labels), value in samples.items()
        if name == "app_requests_total" and dict(labels)["worker"] != "all"
    }


async def send(cluster: ClusterProcess, count: int) -> None:
    """
    C{count} requests, each on a new connection (spread over the workers),
    10 at a time; every one must be answered.
    """
    for start in range(0, count, 10):
        await gatherResults([
            Deferred.fromCoroutine(get(cluster.url)) for _ in range(min(10, count - start))
        ])


class AppMetricsTests(TestCase):
    timeout = 90

    async def test_clusterSumsMatchTheRequestsSent(self) -> None:
        """
        After 30 requests over 3 workers, C{/metrics} shows each worker's
        count under its C{worker} label, and their sum, 30, under
        C{worker="all"}; gauges per live process carry C{worker} and
        C{pid}; every worker answered (fresh).
        """
        cluster = await ClusterProcess.start(self, "--workers", "3", *APP, waitReady=3)
        await send(cluster, 30)
        found = await scrape(cluster)
        self.assertEqual(requests(found, "all"), 30)
        counts = perWorker(found)
        self.assertEqual(sum(counts.values()), 30)
        self.assertEqual(set(counts), {"1", "2", "3"})
        self.assertGreaterEqual(min(counts.values()), 1)
        for workerId, pid in cluster.workers.items():
            labels = (("pid", str(pid)), ("worker", str(workerId)))
            self.assertEqual(found[("app_in_flight", labels)], 0)
            self.assertEqual(found[("twisted_cluster_app_metrics_fresh", labels)], 1)
        self.assertEqual(
            found[("app_request_size_bytes_count", (("worker", "all"),))], 30)

    async def test_clusterCounterDoesNotDecreaseAfterSigkillOrSighup(self) -> None:
        """
        A worker SIGKILLed: the count it had at the last scrape stays in
        its slot and in the total, and its replacement adds to them.  A
        roll-out (SIGHUP) after requests nobody scraped yet: every old
        worker hands its final count over as it exits, and the total is
        exactly the requests sent.
        """
        cluster = await ClusterProcess.start(self, "--workers", "3", *APP, waitReady=3)
        await send(cluster, 30)
        before = await scrape(cluster)
        self.assertEqual(requests(before, "all"), 30)

        victim = cluster.workers[2]
        os.kill(victim, signal.SIGKILL)
        await waitUntil(lambda: cluster.workers[2] != victim, 30, "a replacement of worker 2")
        afterKill = await scrape(cluster)
        self.assertEqual(requests(afterKill, "all"), 30)
        self.assertEqual(perWorker(afterKill), perWorker(before))

        await send(cluster, 15)
        old = set(cluster.workers.values())
        cluster.signal("HUP")
        await waitUntil(lambda: cluster.logged(logevents.ROLLOUT_DONE), 60,
                        "the end of the roll-out")
        await waitUntil(lambda: not any(pidAlive(p) for p in old), 30, "the old workers")
        afterRollout = await scrape(cluster)
        self.assertEqual(requests(afterRollout, "all"), 45)
        for workerId, value in perWorker(afterKill).items():
            self.assertGreaterEqual(perWorker(afterRollout)[workerId], value)
        self.assertFalse(set(cluster.workers.values()) & old)

    async def test_aStoppedWorkerDoesNotStallTheScrape(self) -> None:
        """
        A SIGSTOPped worker holds a scrape up for the per-worker time-out
        (1 s) only: the others' series are served, its own are left out
        (stale), its last count stays in the total, and the error is
        counted and logged with its worker id and pid.
        """
        cluster = await ClusterProcess.start(self, "--workers", "3", *APP, waitReady=3)
        await send(cluster, 30)
        before = await scrape(cluster)
        stopped = cluster.workers[3]
        os.kill(stopped, signal.SIGSTOP)
        self.addCleanup(lambda: pidAlive(stopped) and os.kill(stopped, signal.SIGCONT))
        await sleep(1.05)
        address, token = control(cluster)
        began = time.monotonic()
        text = (await get(address + "metrics", token)).decode("utf-8")
        elapsed = time.monotonic() - began
        self.assertLess(elapsed, 2.5)
        found = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        self.assertEqual(requests(found, "all"), 30)
        self.assertEqual(set(perWorker(found)), {"1", "2"})
        self.assertEqual(perWorker(found)["1"], perWorker(before)["1"])
        labels = (("pid", str(stopped)), ("worker", "3"))
        self.assertEqual(found[("twisted_cluster_app_metrics_fresh", labels)], 0)
        self.assertEqual(
            found[("twisted_cluster_scrape_errors_total", (("reason", "timeout"), ("worker", "3")))],
            1)
        [warning] = await waitUntil(lambda: cluster.logged(logevents.APP_METRICS_STALE), 5,
                                    "the warning")
        self.assertEqual((warning["worker_id"], warning["worker_pid"], warning["cause"]),
                         (3, stopped, "timeout"))

    async def test_aNamedRegistryIsPublished(self) -> None:
        """
        A L{ClusterApp} that names its own registry publishes that one's
        series, not the default registry's.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "2", *APP[2:], "--app", "tests.apps.counting.named",
            waitReady=2,
        )
        await send(cluster, 4)
        found = await scrape(cluster)
        self.assertEqual(
            found[("own_requests_total", (("path", "/"), ("worker", "all")))], 4)
        self.assertNotIn(("app_requests_total", (("path", "/"), ("worker", "all"))), found)


class BadOptionTests(TestCase):
    timeout = 60

    async def test_aRegistryThatIsNoneFailsWithOneLine(self) -> None:
        """
        C{metricsRegistry} naming something that is no registry: exit 1,
        one line on stderr that names the option, no worker started.
        """
        out, err, code = await getProcessOutputAndValue(
            TWIST[0], [*TWIST[1:], "cluster", "--app", "tests.apps.counting.notARegistry",
                       "--listen", "tcp:0:interface=127.0.0.1"],
            env=testEnvironment(), path=ROOT,
        )
        self.assertEqual(code, 1)
        [line] = err.decode().strip().splitlines()
        self.assertTrue(line.startswith("twist cluster: error: "), line)
        self.assertIn("metricsRegistry", line)
        self.assertNotIn(b"started", out)


class StatusPageFiguresTests(TestCase):
    timeout = 60

    async def test_statusJsonShowsTheSeriesTheAppNamesPerWorker(self) -> None:
        """
        With C{statusSeries}, each worker's row of C{/status.json} (what the
        page shows) carries the named counter, summed over its labels, and
        the rows add up to the requests sent.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "2", *APP[2:], "--app", "tests.apps.counting.onThePage",
            waitReady=2,
        )
        await send(cluster, 6)
        address, token = control(cluster)

        async def rows() -> list[dict[str, Any]]:
            return list(json.loads(await get(address + "status.json", token))["workers"])

        deadline = reactor.seconds() + 15
        while True:
            workers = await rows()
            figures = [w.get("app", {}).get("app_requests_total", 0) for w in workers]
            if sum(figures) == 6:
                break
            if reactor.seconds() > deadline:
                raise AssertionError(f"rows never added up to 6: {workers}")
            await sleep(0.3)
        self.assertEqual(len(figures), 2)


def freePort() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusTests(TestCase):
    timeout = 90

    async def test_prometheusScrapesTheClusterTotal(self) -> None:
        """
        A real Prometheus scraping the control site with the master's token
        reads the target as up and the cluster total of the app's counter,
        and computes requests/s across the cluster with the documented
        query.
        """
        binary = shutil.which("prometheus")
        if binary is None:
            raise self.skipTest("no prometheus binary (apt-get install prometheus)")
        cluster = await ClusterProcess.start(self, "--workers", "2", *APP, waitReady=2)
        await send(cluster, 20)
        address, _ = control(cluster)
        [written] = cluster.logged(logevents.CONTROL_TOKEN_WRITTEN)
        directory = shortTempDir(self)
        config = os.path.join(directory, "prometheus.yml")
        with open(config, "w") as f:
            f.write(
                "global: {scrape_interval: 1s, scrape_timeout: 900ms}\n"
                "scrape_configs:\n"
                "  - job_name: cluster\n"
                "    authorization: {credentials_file: %s}\n"
                "    static_configs: [{targets: ['%s']}]\n"
                % (written["token_file"], address.split("//")[1].rstrip("/"))
            )
        port = freePort()
        log = open(os.path.join(directory, "prometheus.log"), "wb")
        self.addCleanup(log.close)
        server = subprocess.Popen(
            [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
             f"--storage.tsdb.path={directory}/data"],
            stdout=log, stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            if server.poll() is None:
                os.kill(server.pid, signal.SIGKILL)
            server.wait(10)

        self.addCleanup(stop)

        async def query(expression: str) -> list[Any]:
            try:
                body = await get(f"http://127.0.0.1:{port}/api/v1/query?query="
                                 + quote(expression))
            except Exception:
                return []
            return list(json.loads(body)["data"]["result"])

        async def total() -> float | None:
            result = await query('app_requests_total{worker="all"}')
            return float(result[0]["value"][1]) if result else None

        deadline = reactor.seconds() + 40
        while await total() != 20.0:
            if reactor.seconds() > deadline:
                with open(os.path.join(directory, "prometheus.log")) as f:
                    raise AssertionError("Prometheus never read 20 requests:\n" + f.read()[-2000:])
            await sleep(0.5)
        [up] = await query('up{job="cluster"}')
        self.assertEqual(up["value"][1], "1")
        await send(cluster, 20)
        deadline = reactor.seconds() + 20
        while not await query('sum(rate(app_requests_total{worker="all"}[10s])) > 0'):
            if reactor.seconds() > deadline:
                raise AssertionError("no rate across the cluster")
            await sleep(0.5)
