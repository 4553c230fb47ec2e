"""
Integration test of C{--worker-connections} with a real master and real
workers on 127.0.0.1: a full worker gets no new connection, and when every
worker is full the next one waits in the master (counted in the status
and the metrics) until a connection closes.
"""

from __future__ import annotations

import json
import socket

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.support import ClusterProcess, waitUntil
from tests.test_observability import FAST, controlAddress, controlToken
from twisted_cluster import logevents


def connect(testCase: TestCase, port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    testCase.addCleanup(sock.close)
    return sock


def received(sock: socket.socket) -> bytes | None:
    try:
        return sock.recv(100)
    except BlockingIOError:
        return None


class WorkerConnectionsTests(TestCase):
    timeout = 60

    async def status(self, cluster: ClusterProcess) -> dict[str, object]:
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = await treq.get(
            controlAddress(cluster) + "status.json", pool=pool, timeout=10,
            headers={"Authorization": f"Bearer {controlToken(cluster)}"},
        )
        document: dict[str, object] = json.loads(await response.content())
        return document

    async def test_fullWorkersGetNoneAndTheNextConnectionWaitsForRoom(self) -> None:
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--worker-connections", "1",
            "--app", "tests.apps.holding.factory", *FAST, waitReady=2,
        )
        assert cluster.port is not None
        first = connect(self, cluster.port)
        firstPid = int(await waitUntil(lambda: received(first), 10, "a first answer"))
        second = connect(self, cluster.port)
        secondPid = int(await waitUntil(lambda: received(second), 10, "a second answer"))
        self.assertEqual({firstPid, secondPid}, set(cluster.workers.values()))

        third = connect(self, cluster.port)
        await waitUntil(
            lambda: cluster.logged(logevents.WORKERS_AT_CAPACITY), 10, "every worker full"
        )
        summary = (await self.status(cluster))["cluster"]
        assert isinstance(summary, dict)
        self.assertEqual((summary["waiting"], summary["capped"], summary["dropped"]),
                         (1, 1, 0))
        self.assertIsNone(received(third), "a connection past the cap was served")

        second.close()
        thirdPid = int(await waitUntil(lambda: received(third), 10, "the waiting one"))
        self.assertEqual(thirdPid, secondPid)
        [room] = cluster.logged(logevents.WORKER_ROOM_FOR_CONNECTIONS)
        self.assertEqual((room["worker_pid"], room["waited"]), (secondPid, 1))
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = await treq.get(
            controlAddress(cluster) + "metrics", pool=pool, timeout=10,
            headers={"Authorization": f"Bearer {controlToken(cluster)}"},
        )
        metrics = (await response.content()).decode()
        self.assertIn("twisted_cluster_connections_capped_total 1.0", metrics)
        self.assertIn("twisted_cluster_connections_waiting 0.0", metrics)
