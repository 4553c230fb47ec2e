"""
Integration tests of the life cycle for apps of any protocol: real master
and workers on 127.0.0.1, every wait bounded, every process killed by pid.

  - a plain protocol app with idle clients stops long before the grace
    period: at once after its own drain, after the idle grace without one;
  - during a roll-out under a stream of broadcasts, clients on old workers
    receive every message until their worker closes them;
  - the master-side events fire in order with the right causes;
  - a worker that delays its Ready gets no connection before it is ready.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from examples.pubsub import Deliver
from tests.support import ClusterProcess, sleep, testEnvironment, waitUntil
from twisted_cluster import logevents
from twisted_cluster._worker.draining import IDLE_GRACE
from twisted_cluster.testing import startCluster


class LineClient(LineReceiver):
    """
    A client that keeps every line it receives and when it was closed.
    """

    delimiter = b"\n"

    def __init__(self) -> None:
        self.received: list[str] = []
        self.closedAt: float | None = None

    def lineReceived(self, line: bytes) -> None:
        self.received.append(line.decode().rstrip("\r"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closedAt = time.monotonic()

    def say(self, line: str) -> None:
        self.sendLine(line.encode())


async def connect(testCase: TestCase, port: int) -> LineClient:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    client = await connectProtocol(endpoint, LineClient())
    testCase.addCleanup(lambda: client.transport.abortConnection())
    return client


def appEvents(cluster: ClusterProcess, field: str, **fields: Any) -> list[dict[str, Any]]:
    """
    The events the test apps logged with C{field} (theirs, not the
    cluster's vocabulary), with the given field values.
    """
    return [
        e for e in cluster.events
        if field in e and all(e.get(k) == v for k, v in fields.items())
    ]


class PlainDrainTests(TestCase):
    timeout = 40

    async def test_idleClientsOfAPlainAppAreClosedAfterTheIdleGrace(self) -> None:
        """
        A plain protocol app that declares nothing: on SIGTERM, a client
        that never sent a byte and one that went quiet are closed after
        the idle grace (2 s), not at the grace period (6 s), and no worker
        is killed.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", "tests.apps.lifecycle.plain",
            "--grace-period", "6",
        )
        silent = await connect(self, cluster.port)
        quiet = await connect(self, cluster.port)
        quiet.say("hello")
        await waitUntil(lambda: quiet.received, 10, "an answer")
        started = time.monotonic()
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(10), 0)
        took = time.monotonic() - started
        self.assertLess(took, 4.5)
        for client in (silent, quiet):
            assert client.closedAt is not None
            self.assertGreaterEqual(client.closedAt - started, IDLE_GRACE - 0.1)
        self.assertEqual(cluster.logged(logevents.WORKER_KILLED), [])
        [stopped] = appEvents(cluster, "lifecycle_app", lifecycle_app="stopFactory")
        self.assertEqual(stopped["worker_id"], 1)

    async def test_appThatDrainsItselfStopsOnceItsDrainFinished(self) -> None:
        """
        The pub/sub example tells its clients to reconnect and closes them
        after 1 s: the worker exits then, well under the 6 s grace period.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", "examples.pubsub.app",
            "--grace-period", "6",
        )
        client = await connect(self, cluster.port)
        client.say("JOIN lobby")
        await waitUntil(lambda: client.received, 10, "OK")
        started = time.monotonic()
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(10), 0)
        self.assertLess(time.monotonic() - started, 3.5)
        self.assertEqual(client.received, ["OK", "RECONNECT"])
        [drained] = cluster.logged(logevents.APP_DRAINED)
        self.assertEqual(drained["worker_id"], 1)
        self.assertEqual(cluster.logged(logevents.WORKER_KILLED), [])


class RolloutMessagingTests(TestCase):
    timeout = 60

    async def test_clientsOnOldWorkersGetEveryMessageUntilClosed(self) -> None:
        """
        Four subscribers on two workers; the master broadcasts a numbered
        message every 10 ms while every worker is replaced.  Each client
        on an old worker receives an unbroken run of messages, the ones
        sent after its worker began to drain (after RECONNECT) included,
        until its worker closes it.
        """
        cluster = await startCluster(self, "examples.pubsub.app", workers=2)
        clients = [await connect(self, cluster.port) for _ in range(4)]
        for client in clients:
            client.say("JOIN room")
        await waitUntil(lambda: all(c.received == ["OK"] for c in clients), 10, "joins")
        sent = 0
        rolled = cluster.service.rollingRestart()
        while not (rolled.called and all(c.closedAt for c in clients)):
            cluster.broadcast(Deliver, room="room", text=str(sent))
            sent += 1
            await sleep(0.01)
            if sent > 3000:
                self.fail("the roll-out did not finish")
        self.assertTrue(rolled.result)
        # The example's master object provides IMasterEvents: it heard both.
        await cluster.waitUntil(
            lambda: cluster.service.masterResponders.exits["rollout"] == 2, 10,
            "the old workers' exits",
        )
        for client in clients:
            messages = [line for line in client.received if line.startswith("MSG")]
            numbers = [int(line.split()[2]) for line in messages]
            self.assertEqual(numbers, list(range(len(numbers))))
            after = client.received[client.received.index("RECONNECT") + 1:]
            self.assertGreater(len(after), 20, client.received[-5:])


class MasterEventsOrderTests(TestCase):
    timeout = 90

    def hooks(self, cluster: ClusterProcess, pid: int) -> list[tuple[str, Any]]:
        return [
            (e["lifecycle_hook"], e.get("cause"))
            for e in appEvents(cluster, "lifecycle_hook", worker_pid=pid)
        ]

    async def exitOf(self, cluster: ClusterProcess, pid: int, cause: str) -> None:
        await waitUntil(
            lambda: appEvents(cluster, "lifecycle_hook", lifecycle_hook="exited",
                              worker_pid=pid),
            20, f"pid {pid} to exit ({cause})",
        )
        self.assertEqual(self.hooks(cluster, pid)[-1], ("exited", cause))

    async def test_hooksFireInOrderWithTheirCauses(self) -> None:
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", "tests.apps.lifecycle.recorded",
            "--health-interval", "0.3", "--health-timeout", "1",
            "--grace-period", "5", waitReady=2,
        )
        await waitUntil(
            lambda: appEvents(cluster, "lifecycle_hook", lifecycle_hook="clusterReady"),
            10, "clusterReady",
        )
        # Crash.
        crashed = cluster.workers[1]
        os.kill(crashed, signal.SIGKILL)
        await self.exitOf(cluster, crashed, "crash")
        self.assertEqual(
            self.hooks(cluster, crashed), [("started", None), ("ready", None), ("exited", "crash")]
        )
        [exited] = appEvents(cluster, "lifecycle_hook", lifecycle_hook="exited",
                             worker_pid=crashed)
        self.assertEqual(exited["exit_signal"], "KILL")
        await waitUntil(lambda: cluster.workers[1] != crashed, 20, "a new worker 1")
        # Hang.
        hung = cluster.workers[2]
        os.kill(hung, signal.SIGSTOP)
        await self.exitOf(cluster, hung, "hang")
        self.assertEqual(self.hooks(cluster, hung)[-2:], [("draining", "hang"), ("exited", "hang")])
        await waitUntil(lambda: cluster.workers[2] != hung, 20, "a new worker 2")
        # Roll-out: the new worker is ready before the old one drains.
        old = dict(cluster.workers)
        cluster.signal("HUP")
        for pid in old.values():
            await self.exitOf(cluster, pid, "rollout")
            self.assertEqual(self.hooks(cluster, pid)[-2:], [("draining", "rollout"), ("exited", "rollout")])
        order = [
            (e["lifecycle_hook"], e["worker_pid"])
            for e in appEvents(cluster, "lifecycle_hook") if "worker_pid" in e
        ]
        for workerId, pid in old.items():
            new = cluster.workers[workerId]
            self.assertLess(order.index(("ready", new)), order.index(("draining", pid)))
        # Removal.
        removed = cluster.workers[2]
        cluster.signal("TTOU")
        await self.exitOf(cluster, removed, "removed")
        self.assertEqual(self.hooks(cluster, removed)[-2:], [("draining", "removed"), ("exited", "removed")])
        # Stop.
        last = cluster.workers[1]
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(20), 0)
        self.assertEqual(self.hooks(cluster, last)[-2:], [("draining", "stopped"), ("exited", "stopped")])
        self.assertTrue(appEvents(cluster, "lifecycle_hook", lifecycle_hook="clusterStopping"))

    async def test_recycledWorkerExitsAsRecycle(self) -> None:
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", "tests.apps.lifecycle.recorded",
            "--max-connections", "1", "--health-interval", "0.3",
        )
        first = cluster.workers[1]
        for _ in range(2):
            client = await connect(self, cluster.port)
            client.say("x")
            await waitUntil(lambda: client.received, 10, "an answer")
        await self.exitOf(cluster, first, "recycle")
        self.assertEqual(self.hooks(cluster, first)[-2:], [("draining", "recycle"), ("exited", "recycle")])


class DelayedReadyTests(TestCase):
    timeout = 40

    async def test_workerThatDelaysReadyGetsNoConnectionBeforeIt(self) -> None:
        env = testEnvironment()
        env["LIFECYCLE_READY_DELAY"] = "1.5"
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", "tests.apps.lifecycle.slowReady",
            env=env, waitReady=0,
        )
        await waitUntil(lambda: cluster.port, 20, "the port")
        client = await connect(self, cluster.port)
        client.say("who")
        await waitUntil(lambda: client.received, 20, "an answer")
        [ready] = appEvents(cluster, "lifecycle_app", lifecycle_app="ready")
        [built] = appEvents(cluster, "lifecycle_app", lifecycle_app="connection")
        self.assertGreaterEqual(built["at"], ready["at"])
        [readyEvent] = cluster.logged(logevents.WORKER_READY)
        [started] = cluster.logged(logevents.WORKER_STARTED)
        self.assertEqual(readyEvent["worker_pid"], started["worker_pid"])

    async def test_failingStartedHookIsAFailedStartup(self) -> None:
        """
        A C{workerStarted} that fails is the start-up's failure: with no
        worker ever ready, the master stops with one line and exit 1.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", "tests.apps.lifecycle.brokenStart",
            waitReady=0,
        )
        self.assertEqual(await cluster.waitExit(30), 1)
        [error] = cluster.logged(logevents.WORKER_APP_ERROR)
        self.assertIn("ConnectionRefusedError", error["error"])
        self.assertEqual(cluster.logged(logevents.WORKER_READY), [])
        self.assertEqual(len(cluster.stderr.strip().splitlines()), 1)
