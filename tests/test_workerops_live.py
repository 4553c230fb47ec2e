"""
Integration tests of the operations on one worker, through C{ctl} and a
real master's control site on a UNIX socket: kill, restart and drain by
id, their refusals (in C{ctl}'s output and once in the master's log), and
shutdown.
"""

from __future__ import annotations

import json
import os
import re
import sys

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.support import ROOT, ClusterProcess, pidAlive, shortTempDir, waitUntil
from tests.test_observability import FAST, controlAddress, controlToken
from tests.test_statuspage import CHROMIUM, chromium
from twisted_cluster import logevents


class OneWorkerTests(TestCase):
    timeout = 60

    async def start(self, *args: str, workers: int = 3) -> ClusterProcess:
        self.socket = os.path.join(shortTempDir(self), "c.sock")
        return await ClusterProcess.start(
            self, "--workers", str(workers), "--app", "tests.apps.sleepy.resource",
            "--control", f"unix:{self.socket}", *args, waitReady=workers,
        )

    async def ctl(self, *argv: str) -> tuple[int, str, str]:
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "twisted_cluster.ctl", "--control", f"unix:{self.socket}", *argv],
            env=dict(os.environ, PYTHONPATH=ROOT), path=ROOT,
        )
        return code, out.decode(), err.decode()

    async def test_killRestartAndDrainActOnTheWorkerNamed(self) -> None:
        cluster = await self.start()
        before = dict(cluster.workers)

        code, out, err = await self.ctl("kill", "2")
        self.assertEqual(code, 0, err)
        await waitUntil(lambda: cluster.workers[2] != before[2], 15, "worker 2 replaced")
        self.assertFalse(pidAlive(before[2]))
        [exited] = cluster.logged(logevents.WORKER_EXITED, worker_pid=before[2])
        self.assertEqual((exited["cause"], exited["how"]), ("kill", "signal KILL"))

        code, out, err = await self.ctl("restart", "1")
        self.assertEqual(code, 0, err)
        [replaced] = await waitUntil(
            lambda: cluster.logged(logevents.WORKER_REPLACED, worker_pid=before[1]),
            15, "worker 1 replaced",
        )
        self.assertEqual((replaced["worker_id"], replaced["cause"]), (1, "rollout"))

        code, out, err = await self.ctl("drain", "3")
        self.assertEqual(code, 0, err)
        await waitUntil(lambda: not pidAlive(before[3]), 15, "worker 3 gone")
        [removed] = cluster.logged(logevents.WORKER_REMOVED)
        self.assertEqual((removed["worker_id"], removed["worker_pid"]), (3, before[3]))
        self.assertEqual(
            [e["worker_pid"] for e in cluster.logged(logevents.WORKER_STARTED, worker_id=3)],
            [before[3]], "drain does not replace the worker",
        )
        # Untouched: the other workers kept their pids.
        self.assertTrue(pidAlive(cluster.workers[2]))

    async def test_refusalsSayTheRealReasonInCtlAndOnceInTheLog(self) -> None:
        cluster = await self.start("--max-workers", "2", workers=1)
        cases = [
            (("drain", "9"), logevents.REMOVE_REFUSED, "no_such_worker", "no worker 9"),
            (("drain", "1"), logevents.REMOVE_REFUSED, "last_worker", "last worker"),
            (("kill", "4"), logevents.KILL_REFUSED, "no_such_worker", "no worker 4"),
            (("scale", "3"), logevents.ADD_REFUSED, "max_workers", "--max-workers"),
        ]
        for argv, key, reason, words in cases:
            code, out, err = await self.ctl(*argv)
            self.assertEqual(code, 1, argv)
            self.assertEqual(len(err.splitlines()), 1, err)
            self.assertIn(words, err)
            self.assertEqual(
                len(await waitUntil(lambda: cluster.logged(key, reason=reason), 5, reason)),
                1, argv,
            )
        code, out, err = await self.ctl("drain")
        self.assertEqual((code, len(err.splitlines())), (1, 1))

    async def test_shutdownStopsTheMasterAndItsWorkers(self) -> None:
        cluster = await self.start(workers=2)
        code, out, err = await self.ctl("shutdown")
        self.assertEqual(code, 0, err)
        self.assertEqual(await cluster.waitExit(20), 0)
        self.assertFalse([p for p in cluster.started if pidAlive(p)])
        [requested] = cluster.logged(logevents.SHUTDOWN_REQUESTED)
        self.assertFalse(requested["now"])

    async def test_shutdownNowKillsTheWorkersAtOnce(self) -> None:
        cluster = await self.start("--grace-period", "30", workers=1)
        # A request in flight would hold a graceful stop for 20 s.
        slow = getProcessOutputAndValue(
            sys.executable, ["-c", (
                "import urllib.request, sys; "
                f"urllib.request.urlopen('{cluster.url}slow?s=20', timeout=30)"
            )],
        )
        slow.addErrback(lambda failure: None)

        async def dispatched() -> int:
            code, out, err = await self.ctl("status", "--json")
            return int(json.loads(out)["workers"][0]["dispatched"])

        for _ in range(50):
            if await dispatched():
                break
        else:
            self.fail("the slow request never reached the worker")
        code, out, err = await self.ctl("shutdown", "--now")
        self.assertEqual(code, 0, err)
        self.assertEqual(await cluster.waitExit(10), 0)
        [exited] = cluster.logged(logevents.WORKER_EXITED)
        self.assertEqual(exited["how"], "signal KILL")
        await slow


class StatusPageButtonTests(TestCase):
    timeout = 90

    def setUp(self) -> None:
        if CHROMIUM is None:
            raise self.skipTest("chromium is not installed: apt-get install -y chromium")

    async def test_eachWorkerRowHasItsButtons(self) -> None:
        """
        The page, rendered by a real browser, gives each worker its
        restart, drain and kill buttons, which post to that worker's
        endpoints.
        """
        cluster = await ClusterProcess.start(self, "--workers", "2", *FAST, waitReady=2)
        url = controlAddress(cluster) + "#token=" + controlToken(cluster)
        dom = await chromium(self, "--virtual-time-budget=3000", "--dump-dom", url)
        ops = re.findall(r'data-op="(\w+)\?worker=(\d+)"', dom)
        self.assertEqual(
            sorted(ops),
            sorted((op, str(w)) for op in ("restart", "drain", "kill") for w in (1, 2)),
        )
