"""
The status page in a real browser: headless Chromium loads the control
site of a running cluster, runs its JavaScript, and the test reads the
rendered DOM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.support import ClusterProcess, waitUntil
from tests.test_observability import FAST, controlAddress, controlToken

CHROMIUM = shutil.which("chromium")

#: Flags for a quiet, private, offline headless run.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]

_ROW = re.compile(
    r'<tr class="worker" data-id="(\d+)" data-pid="(\d+)" data-state="(\w+)">'
)


async def chromium(testCase: TestCase, *args: str) -> str:
    """
    Run headless Chromium with a fresh profile (bounded: 30 s); its stdout.
    """
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="tc-chromium-")
    testCase.addCleanup(shutil.rmtree, profile, True)
    out, err, code = await getProcessOutputAndValue(
        "/usr/bin/timeout",
        ["-k", "5", "30", CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        env=dict(os.environ, HOME=profile),
    )
    if code != 0:
        raise AssertionError(f"chromium exited {code}: {err.decode(errors='replace')[-2000:]}")
    return out.decode("utf-8", "replace")


async def renderedRows(testCase: TestCase, url: str) -> list[tuple[int, int, str]]:
    """
    The worker rows of the status page at C{url} once its script ran:
    (id, pid, state).
    """
    dom = await chromium(testCase, "--virtual-time-budget=3000", "--dump-dom", url)
    return [(int(i), int(p), s) for i, p, s in _ROW.findall(dom)]


class StatusPageTests(TestCase):
    timeout = 90

    def setUp(self) -> None:
        if CHROMIUM is None:
            raise self.skipTest(
                "chromium is not installed: apt-get install -y chromium "
                "(tests/run.sh does it when run as root)"
            )

    async def test_pageShowsTheWorkersAndFollowsAKilledOne(self) -> None:
        """
        The page renders one row per worker with the master's pids; after a
        worker is killed, the page shows its replacement.
        """
        cluster = await ClusterProcess.start(self, "--workers", "2", *FAST, waitReady=2)
        # The token goes in the fragment, which the browser never sends.
        url = controlAddress(cluster) + "#token=" + controlToken(cluster)
        rows = await renderedRows(self, url)
        self.assertEqual(
            rows, [(1, cluster.workers[1], "ready"), (2, cluster.workers[2], "ready")]
        )
        old = cluster.workers[1]
        os.kill(old, signal.SIGKILL)
        await waitUntil(lambda: cluster.workers[1] != old, 10, "worker 1 replaced")
        rows = await renderedRows(self, url)
        self.assertEqual(
            rows, [(1, cluster.workers[1], "ready"), (2, cluster.workers[2], "ready")]
        )
        self.assertNotEqual(rows[0][1], old)
