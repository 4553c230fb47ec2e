"""
Integration tests of the security review's findings on the app's metrics,
on a real cluster: colliding families leave a valid exposition, and a
collector that raises logs once in the worker and one escaped line in the
master.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.support import ClusterProcess, sleep, waitUntil
from tests.test_appmetrics_bounds import ValidExpositionMixin
from tests.test_appmetrics_live import control, get
from twisted_cluster import logevents

#: The control site on 127.0.0.1, one worker.
OPTIONS = ("--workers", "1", "--control", "tcp:0:interface=127.0.0.1")


async def scrapeText(cluster: ClusterProcess) -> str:
    """
    The master's C{/metrics}, rendered afresh (a render is cached 1 s).
    """
    await sleep(1.05)
    address, token = control(cluster)
    return (await get(address + "metrics", token)).decode("utf-8")


class BadAppMetricsTests(ValidExpositionMixin, TestCase):
    timeout = 60

    async def test_collidingFamiliesLeaveAValidScrape(self) -> None:
        """
        A worker's counter C{dup} and gauge C{dup_total}: the scrape is
        valid (prometheus_client's parser, promtool when installed), the
        counter kept, the gauge dropped, counted and logged with the
        worker's id and pid.
        """
        cluster = await ClusterProcess.start(
            self, *OPTIONS, "--app", "tests.apps.badmetrics.conflicting")
        text = await scrapeText(cluster)
        self.assertValidExposition(text)
        self.assertIn('dup_total{worker="all"} 3.0', text)
        self.assertIn('app_fine{pid="%d",worker="1"} 1.0' % cluster.workers[1], text)
        self.assertIn('twisted_cluster_scrape_errors_total{reason="conflict",worker="1"}', text)
        [event] = await waitUntil(
            lambda: cluster.logged(logevents.APP_METRICS_CONFLICT, worker_id=1), 5, "the event")
        self.assertEqual(event["worker_pid"], cluster.workers[1])

    async def test_aRaisingCollectorLogsOnceAndOnOneLine(self) -> None:
        """
        Three scrapes of a worker whose collector raises: the worker logs
        its traceback once (the master forwards it with worker_id), and
        the master's warning carries the error's text with its line break
        escaped.
        """
        cluster = await ClusterProcess.start(
            self, *OPTIONS, "--app", "tests.apps.badmetrics.raising")
        for _ in range(3):
            text = await scrapeText(cluster)
        self.assertIn('twisted_cluster_scrape_errors_total{reason="failed",worker="1"} 3.0', text)
        [stale] = await waitUntil(
            lambda: cluster.logged(logevents.APP_METRICS_STALE, worker_id=1), 5, "the warning")
        self.assertEqual(stale["cause"], "failed")
        self.assertIn("boom\\x0asecond line", stale["detail"])
        failed = cluster.logged(logevents.APP_METRICS_FAILED, worker_id=1)
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["worker_pid"], cluster.workers[1])
