"""
A real worker that writes without end to its stdout: the master's memory
stays bounded and it goes on logging.
"""

from __future__ import annotations

import treq
from twisted.trial.unittest import TestCase

from tests.support import ClusterProcess, waitUntil
from twisted_cluster._shared.workerlog import LINE_LIMIT


def rssKiB(pid: int) -> int:
    """
    The resident set size of process C{pid}, in KiB (from /proc).
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class EndlessStdoutTests(TestCase):
    timeout = 60

    async def test_aWorkerPrintingWithoutNewlineDoesNotGrowTheMaster(self) -> None:
        """
        24 MiB printed without a newline cost the master less than 8 MiB of
        memory: it logs the line's first L{LINE_LIMIT} bytes, marked
        truncated, and drops the rest.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", "tests.apps.flood.resource"
        )
        assert cluster.pid is not None
        before = rssKiB(cluster.pid)
        response = await treq.get(cluster.url + "stdout?mb=24", persistent=False, timeout=20)
        self.assertEqual(await response.content(), b"written")

        def cut() -> list:
            return [e for e in cluster.events if e.get("truncated") is True]

        [event] = await waitUntil(cut, 10, "the truncated stdout line")
        self.assertEqual(len(event["line"]), LINE_LIMIT)
        self.assertEqual((event["worker_id"], event["worker_pid"]), (1, cluster.workers[1]))
        grown = rssKiB(cluster.pid) - before
        self.assertLess(grown, 8 * 1024, f"the master grew by {grown} KiB")
