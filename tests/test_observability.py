"""
Integration tests of the control site: C{/status.json}, C{/metrics} and the
operations of a real C{twist cluster}, and C{python -m twisted_cluster.ctl}
against it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.support import (
    ROOT,
    ClusterProcess,
    shortTempDir,
    sleep,
    testEnvironment,
    waitUntil,
)
from twisted_cluster import logevents

#: Options that make figures arrive fast and keep the site on 127.0.0.1.
FAST = ("--health-interval", "0.2", "--control", "tcp:0:interface=127.0.0.1")


def controlAddress(cluster: ClusterProcess) -> str:
    """
    The control site's address, from the master's structured log.
    """
    for event in cluster.events:
        if event.get("cluster_event") == logevents.CONTROL_LISTENING:
            return str(event["address"])
    raise AssertionError("the master did not log its control site")


def controlToken(cluster: ClusterProcess) -> str:
    """
    The token of the cluster's TCP control site, from the file the master
    logged.
    """
    for event in cluster.events:
        if event.get("cluster_event") == logevents.CONTROL_TOKEN_WRITTEN:
            with open(event["token_file"]) as f:
                return f.read().strip()
    raise AssertionError("the master did not log its control token file")


async def fetch(
    url: str, method: str = "GET", control: bool = True, token: str | None = None
) -> tuple[int, bytes]:
    """
    One request on a new connection, with the bearer C{token} if given;
    (status, body).
    """
    pool = HTTPConnectionPool(reactor, persistent=False)
    headers = {"X-Cluster-Control": "1"} if control else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = await treq.request(method, url, headers=headers, pool=pool, timeout=10)
    return response.code, await response.content()


async def status(cluster: ClusterProcess) -> dict[str, Any]:
    code, body = await fetch(controlAddress(cluster) + "status.json", token=controlToken(cluster))
    assert code == 200, code
    return json.loads(body)


async def metrics(cluster: ClusterProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, body = await fetch(controlAddress(cluster) + "metrics", token=controlToken(cluster))
    assert code == 200, code
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


class Poll:
    """
    Keeps the last value an async getter returned, for L{waitUntil}.
    """

    def __init__(self, cluster: ClusterProcess, get: Any) -> None:
        self.cluster, self.get, self.value = cluster, get, None

    async def until(self, predicate: Any, timeout: float, what: str) -> Any:
        async def check() -> bool:
            self.value = await self.get(self.cluster)
            return bool(predicate(self.value))

        deadline = reactor.seconds() + timeout
        while not await check():
            if reactor.seconds() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}: {self.value}")
            await sleep(0.1)
        return self.value


class StatusTests(TestCase):
    timeout = 60

    async def test_statusJsonShowsEachWorkerWithItsFigures(self) -> None:
        """
        After 6 requests, C{/status.json} lists the two ready workers with
        the master's pids, the connections accepted and dispatched, and
        the figures of their health pings (served, RSS, round trip).
        """
        cluster = await ClusterProcess.start(self, "--workers", "2", *FAST, waitReady=2)
        for _ in range(6):
            code, _ = await fetch(cluster.url, control=False)
            self.assertEqual(code, 200)
        document = await Poll(cluster, status).until(
            lambda s: sum(w["served"] for w in s["workers"]) == 6, 10, "6 served"
        )
        workers = document["workers"]
        self.assertEqual({w["id"]: w["pid"] for w in workers}, cluster.workers)
        self.assertEqual([w["state"] for w in workers], ["ready", "ready"])
        self.assertEqual(sum(w["dispatched"] for w in workers), 6)
        self.assertEqual(document["cluster"]["accepted"], 6)
        self.assertEqual(document["cluster"]["states"]["ready"], 2)
        self.assertEqual(document["master"]["pid"], cluster.pid)
        for worker in workers:
            self.assertGreater(worker["rss"], 1_000_000)
            self.assertGreater(worker["ping"], 0)
            self.assertLess(worker["ping"], 10)  # the health timeout

    async def test_metricsFollowACrashedWorker(self) -> None:
        """
        When a worker is killed, C{/metrics} counts a crash restart and its
        per-worker series move from the old pid to the new one.
        """
        cluster = await ClusterProcess.start(self, "--workers", "2", *FAST, waitReady=2)
        old = cluster.workers[1]
        before = await metrics(cluster)
        self.assertEqual(before[("twisted_cluster_restarts_total", (("cause", "crash"),))], 0)
        self.assertEqual(before[("twisted_cluster_workers", (("state", "ready"),))], 2)
        os.kill(old, signal.SIGKILL)
        await waitUntil(lambda: cluster.workers[1] != old, 10, "worker 1 replaced")
        new = cluster.workers[1]
        # /metrics may be up to a second old (it is rendered at most once a
        # second): wait for the render that shows the crash.
        after = await Poll(cluster, metrics).until(
            lambda m: m.get(("twisted_cluster_workers", (("state", "ready"),))) == 2
            and m.get(("twisted_cluster_restarts_total", (("cause", "crash"),))) == 1,
            10, "2 ready workers again",
        )
        self.assertEqual(after[("twisted_cluster_restarts_total", (("cause", "crash"),))], 1)
        pids = {dict(labels).get("pid") for name, labels in after
                if name == "twisted_cluster_worker_state"}
        self.assertEqual(pids, {str(new), str(cluster.workers[2])})


class OperationTests(TestCase):
    timeout = 60

    async def test_addRemoveAndRollingRestart(self) -> None:
        """
        C{POST /add} starts a third worker, C{POST /remove} takes it away,
        C{POST /restart} replaces every worker; without the control header
        nothing happens.
        """
        cluster = await ClusterProcess.start(self, "--workers", "2", *FAST, waitReady=2)
        base, token = controlAddress(cluster), controlToken(cluster)
        code, _ = await fetch(base + "add", "POST", control=False, token=token)
        self.assertEqual(code, 403)
        code, _ = await fetch(base + "add", "POST", token=token)
        self.assertEqual(code, 202)
        await Poll(cluster, status).until(
            lambda s: s["cluster"]["states"]["ready"] == 3, 10, "3 ready workers"
        )
        code, _ = await fetch(base + "remove", "POST", token=token)
        self.assertEqual(code, 202)
        await Poll(cluster, status).until(
            lambda s: [w["id"] for w in s["workers"]] == [1, 2], 15, "worker 3 gone"
        )
        old = set(cluster.workers[i] for i in (1, 2))
        code, _ = await fetch(base + "restart", "POST", token=token)
        self.assertEqual(code, 202)
        document = await Poll(cluster, status).until(
            lambda s: len(s["workers"]) == 2
            and all(w["state"] == "ready" and w["pid"] not in old for w in s["workers"]),
            20, "both workers replaced",
        )
        self.assertEqual(document["cluster"]["restarts"]["rollout"], 2)


class CtlTests(TestCase):
    timeout = 60

    async def test_ctlFindsTheDefaultPrivateSocket(self) -> None:
        """
        By default the master serves its control site on a UNIX socket of
        mode 0600 named after its pid; C{ctl} finds it, prints the table and
        scales the cluster; the socket is removed when the master stops.
        """
        runtime = shortTempDir(self)
        env = dict(testEnvironment(), XDG_RUNTIME_DIR=runtime)
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--health-interval", "0.2", env=env
        )
        path = os.path.join(runtime, "twisted-cluster", f"{cluster.pid}.sock")
        self.assertEqual(controlAddress(cluster), f"unix:{path}")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

        async def ctl(*args: str) -> tuple[bytes, bytes, int]:
            return await getProcessOutputAndValue(
                sys.executable, ["-m", "twisted_cluster.ctl", *args], env=env, path=ROOT
            )

        out, err, code = await ctl("scale", "2")
        self.assertEqual(code, 0, err)
        await waitUntil(lambda: len(cluster.workers) == 2, 10, "a second worker")
        out, err, code = await ctl("status")
        self.assertEqual(code, 0, err)
        rows = [line.split() for line in out.decode().splitlines()]
        header = rows.index(["ID", "PID", "STATE", "UPTIME", "RESTARTS", "OPEN",
                             "SERVED", "DISPATCHED", "RSS", "PING"])
        self.assertEqual(
            [row[:3] for row in rows[header + 1:]],
            [["1", str(cluster.workers[1]), "ready"], ["2", str(cluster.workers[2]), "ready"]],
        )
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(), 0)
        self.assertFalse(os.path.exists(path))
        out, err, code = await ctl("status")
        self.assertEqual(code, 1)
        self.assertIn(b"no running master", err)
