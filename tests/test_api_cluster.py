"""
The developer API in a real cluster: an in-process master on trial's
reactor, real worker processes, started with L{twisted_cluster.testing}.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import treq
from twisted.internet import reactor
from twisted.internet.defer import TimeoutError
from twisted.trial.unittest import TestCase

from tests.apiapp import Misbehave, WhoAreYou
from tests.support import ROOT, ClusterProcess, pidAlive, testEnvironment, waitUntil
from twisted_cluster import NoSuchWorker, WorkerGone
from twisted_cluster.testing import ClusterFailed, startCluster


async def get(url: str) -> tuple[str, str]:
    response = await treq.get(url, persistent=False)
    body = (await response.text()).strip()
    return response.headers.getRawHeaders("X-Cluster-Worker")[0], body


class RealClusterCallTests(TestCase):
    timeout = 60

    async def test_masterCallsOneWorkerAndBroadcastsToAll(self) -> None:
        cluster = await startCluster(self, "tests.apiapp.app", workers=2)
        pids = cluster.workerPids()
        answer = await cluster.callWorker(2, WhoAreYou)
        self.assertEqual(answer, {"worker": 2, "pid": pids[2]})
        answers = await cluster.broadcast(WhoAreYou, timeout=5)
        self.assertEqual(answers, {i: {"worker": i, "pid": pids[i]} for i in (1, 2)})

    async def test_workersCallTheMasterAndEachOther(self) -> None:
        cluster = await startCluster(self, "tests.apiapp.app", workers=2)
        served = [await get(cluster.url + "count") for _ in range(4)]
        self.assertEqual({worker for worker, _ in served}, {"1", "2"})
        self.assertEqual([body for _, body in served], [f"total {n}" for n in (1, 2, 3, 4)])
        self.assertEqual(cluster.service.masterResponders.total, 4)
        pids = cluster.workerPids()
        for _ in range(2):
            worker, body = await get(cluster.url + "relay/2")
            self.assertEqual(body, f"worker 2 pid {pids[2]}")
            if worker == "1":
                break
        else:
            self.fail("worker 1 never served the relay")

    async def test_broadcastWithOneDeadAndOneSlowWorker(self) -> None:
        cluster = await startCluster(self, "tests.apiapp.app", workers=3)
        started = reactor.seconds()
        answers = await cluster.broadcast(Misbehave, timeout=3)
        elapsed = reactor.seconds() - started
        self.assertEqual(answers[1], {"worker": 1})
        self.assertTrue(answers[2].check(WorkerGone), answers[2])
        self.assertTrue(answers[3].check(TimeoutError), answers[3])
        self.assertLess(elapsed, 6)

    async def test_callToAKilledWorkerFailsClearly(self) -> None:
        cluster = await startCluster(self, "tests.apiapp.app", workers=2)
        killed = cluster.workerPids()[2]
        os.kill(killed, signal.SIGKILL)
        await waitUntil(lambda: 2 not in cluster.workerIds(), 10, "worker 2 to go")
        with self.assertRaises(NoSuchWorker):
            await cluster.callWorker(2, WhoAreYou)
        worker, body = await get(cluster.url + "relay/2")
        # Worker 1 serves it (worker 2 is gone), unless the new worker 2 is
        # already up: then it answers with its new pid.
        if worker == "1" and not body.startswith("worker 2 pid"):
            self.assertEqual(body, "error NoSuchWorker: no live worker 2 (ready: 1)")
        else:
            self.assertNotIn(str(killed), body)

    async def test_stopLeavesNoWorkerProcess(self) -> None:
        cluster = await startCluster(self, "tests.apiapp.app", workers=2)
        pids = list(cluster.workerPids().values())
        self.assertTrue(all(pidAlive(pid) for pid in pids))
        await cluster.stop()
        self.assertFalse(any(pidAlive(pid) for pid in pids))
        self.assertEqual(cluster.service.listeners, [])

    async def test_twistClusterInstallsTheMasterRespondersOfAClusterApp(self) -> None:
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", "tests.apiapp.app", waitReady=2
        )
        served = [await get(cluster.url + "count") for _ in range(2)]
        self.assertEqual([body for _, body in served], ["total 1", "total 2"])
        self.assertEqual({worker for worker, _ in served}, {"1", "2"})
        worker, body = await get(cluster.url + "relay/2")
        self.assertEqual(body, f"worker 2 pid {cluster.workers[2]}")

    def test_twistClusterRefusesMasterRespondersThatAreNoLocator(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "twisted", "cluster", "--app", "tests.apiapp.badMaster",
             "--listen", "tcp:0:interface=127.0.0.1"],
            cwd=ROOT, env=testEnvironment(), capture_output=True, timeout=30, text=True,
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr.strip().splitlines(),
            ["twist cluster: error: cannot load app 'tests.apiapp.badMaster': its "
             "masterResponders or masterEvents raised TypeError: responders must be an "
             "amp.CommandLocator or a callable returning one, not int"],
        )

    async def test_appThatCannotLoadFailsTheStart(self) -> None:
        with self.assertRaises(ClusterFailed) as caught:
            await startCluster(self, "tests.apiapp.broken", workers=1)
        self.assertIn("this app cannot start", str(caught.exception))
