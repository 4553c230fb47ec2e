"""
Integration tests of supervision without loss: real master and workers on
127.0.0.1, every wait bounded, every process killed by pid.
"""

from __future__ import annotations

import os
import socket
import time

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.support import ClusterProcess, pidAlive, sleep, testEnvironment, waitUntil
from twisted_cluster import logevents
from twisted_cluster._master.config import ClusterConfig

APP = ("--app", "tests.apps.sleepy.resource")


async def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    """
    One GET on a new connection: (status, body).
    """
    pool = HTTPConnectionPool(reactor, persistent=False)
    response = await treq.get(url, pool=pool, timeout=timeout)
    return response.code, await response.content()



class LoadLoop:
    """
    C{clients} loops of sequential GETs, each on a new connection, until
    stopped; counts answers by pid and failures.
    """

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.sent = 0
        self.failed: list[str] = []
        self.pids: list[int] = []
        self._running = True
        self.done = gatherResults(
            [Deferred.fromCoroutine(self._client()) for _ in range(clients)]
        )

    async def _client(self) -> None:
        while self._running:
            self.sent += 1
            try:
                code, body = await get(self.url)
            except Exception as e:
                self.failed.append(repr(e))
                continue
            if code != 200:
                self.failed.append(f"status {code}")
            else:
                self.pids.append(int(body))

    async def stop(self) -> None:
        self._running = False
        await self.done


class HealthCheckTests(TestCase):
    timeout = 40

    async def test_blockedWorkerGetsNoNewConnectionsOnceItStopsAdopting(self) -> None:
        """
        A worker that leaves a connection unadopted gets no more: the next
        requests go to the other worker at once, long before the health
        check would kill the blocked one (the stall is logged after a
        second); the connection that waited for it, which it never
        received, is taken back and served by the other worker while the
        blocked one still sleeps.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--health-timeout", "60", *APP, waitReady=2
        )
        blocking = Deferred.fromCoroutine(get(cluster.url + "block?s=6", timeout=20))
        await sleep(0.3)
        # Round-robin: one of these two lands on the blocked worker's
        # channel, where it waits unread until the master takes it back.
        pair = [Deferred.fromCoroutine(get(cluster.url, timeout=3)) for _ in range(2)]
        answers = [await get(cluster.url, timeout=3) for _ in range(4)]
        await waitUntil(
            lambda: cluster.logged(logevents.WORKER_STALLED),
            5, "the stall event",
        )
        self.assertEqual(len(set(answers)), 1, answers)
        [(code, responsive)] = set(answers)
        pairAnswers = {await d for d in pair}
        self.assertEqual(pairAnswers, {(200, responsive)},
                         "the held connection was served by the other worker")
        self.assertFalse(blocking.called, "the blocked worker woke up too early")
        self.assertEqual((await blocking)[0], 200)

    async def test_workerBlockedInSleepIsReplacedWithinIntervalPlusTimeout(self) -> None:
        """
        A worker whose reactor is blocked in C{time.sleep} stops answering
        pings; within interval + timeout + 1 s (its stacks, then SIGKILL: no
        SIGTERM it could not handle), plus a start-up, it is killed and a
        new worker is ready in its slot.
        """
        interval, timeout = 0.5, 1.0
        cluster = await ClusterProcess.start(
            self, "--workers", "2", *APP,
            "--health-interval", str(interval), "--health-timeout", str(timeout),
            waitReady=2,
        )
        before = dict(cluster.workers)
        blocker = socket.create_connection(("127.0.0.1", cluster.port))
        self.addCleanup(blocker.close)
        started = time.monotonic()
        blocker.sendall(b"GET /block?s=60 HTTP/1.0\r\n\r\n")
        # 4 s for the replacement's start-up on a loaded machine.
        bound = interval + timeout + 1 + 4
        [hang] = await waitUntil(lambda: cluster.logged(logevents.WORKER_HUNG),
                                 bound, "the hang verdict")
        workerId, pid = hang["worker_id"], hang["worker_pid"]
        self.assertEqual(before[workerId], pid)
        await waitUntil(
            lambda: cluster.workers[workerId] != pid and not pidAlive(pid),
            bound - (time.monotonic() - started), "the hung worker's replacement",
        )
        [exited] = [e for e in cluster.restarts() if e["worker_pid"] == pid]
        self.assertEqual(exited["cause"], "hang")
        code, body = await get(cluster.url)
        self.assertEqual(code, 200)


class GracefulStopTests(TestCase):
    timeout = 30

    async def test_slowInFlightRequestCompletesAcrossSigterm(self) -> None:
        """
        A request in flight when the master gets SIGTERM is answered in
        full; then the master exits 0 and no worker is left.
        """
        cluster = await ClusterProcess.start(self, "--workers", "1", *APP)
        answer = Deferred.fromCoroutine(get(cluster.url + "slow?s=2", timeout=15))
        await sleep(0.7)
        cluster.signal("TERM")
        code, body = await answer
        self.assertEqual((code, int(body)), (200, cluster.workers[1]))
        self.assertEqual(await cluster.waitExit(15), 0)
        self.assertFalse([p for p in cluster.started if pidAlive(p)])


    async def test_idleKeepAliveConnectionDoesNotHoldUpTheStop(self) -> None:
        """
        A keep-alive connection between requests is closed by the draining
        worker at once: the master exits long before the grace period.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "1", *APP, "--grace-period", "30"
        )
        keepAlive = socket.create_connection(("127.0.0.1", cluster.port))
        self.addCleanup(keepAlive.close)
        keepAlive.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        keepAlive.setblocking(False)
        await waitUntil(lambda: _recv(keepAlive), 10, "the first response")
        started = time.monotonic()
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(10), 0)
        self.assertLess(time.monotonic() - started, 8)
        self.assertEqual(_recv(keepAlive), b"")


def _recv(sock: socket.socket) -> bytes | None:
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return None


class RollingRestartTests(TestCase):
    timeout = 60

    async def test_sighupUnderLoadFailsNoRequestAndReplacesEveryWorker(self) -> None:
        """
        Under continuous load (new connections), SIGHUP replaces every
        worker one at a time: not one request fails and, afterwards, only
        new worker pids answer.
        """
        cluster = await ClusterProcess.start(self, "--workers", "2", *APP, waitReady=2)
        old = set(cluster.workers.values())
        load = LoadLoop(cluster.url, clients=4)
        try:
            await sleep(0.5)
            cluster.signal("HUP")
            await waitUntil(lambda: cluster.logged(logevents.ROLLOUT_DONE), 30,
                            "the end of the roll-out")
            answered = len(load.pids)
            await sleep(0.5)
        finally:
            await load.stop()
        self.assertEqual(load.failed, [])
        self.assertGreater(len(load.pids), 50)
        new = set(cluster.workers.values())
        self.assertFalse(new & old)
        self.assertEqual(set(load.pids[answered + 8 :]) - new, set())
        await waitUntil(lambda: not any(pidAlive(p) for p in old), 10,
                        "the old workers to exit")
        steps = cluster.logged(logevents.WORKER_REPLACED)
        self.assertEqual(sorted(e["worker_id"] for e in steps), [1, 2])
        self.assertEqual({e["cause"] for e in steps}, {"rollout"})

    async def test_newWorkerThatCannotLoadTheAppAbortsTheRollout(self) -> None:
        """
        A deploy that breaks the app: SIGHUP starts one new worker, which
        fails; the roll-out stops there, its log line says where the new
        worker failed, and the old workers keep serving.
        """
        project = self.mktemp()
        os.makedirs(project)
        module = os.path.join(project, "deployed.py")
        with open(module, "w") as f:
            f.write("from tests.apps.sleepy import resource\n")
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", "deployed.resource", cwd=project,
            env=testEnvironment(extraPath=os.path.dirname(os.path.dirname(__file__))),
            waitReady=2,
        )
        old = dict(cluster.workers)
        with open(module, "w") as f:
            f.write("this is not python\n")
        cluster.signal("HUP")
        [aborted] = await waitUntil(lambda: cluster.logged(logevents.ROLLOUT_ABORTED),
                                    20, "the aborted roll-out")
        # Where the new worker failed, as fields: the last frame and the error.
        self.assertEqual(
            (aborted["error_file"], aborted["error_line"], aborted["exception"]),
            (os.path.abspath(module), 1, "NameError: name 'this' is not defined"),
        )
        self.assertEqual(len(cluster.started), 3)
        self.assertEqual(cluster.workers, old)
        for _ in range(4):
            code, body = await get(cluster.url)
            self.assertEqual(code, 200)
            self.assertIn(int(body), old.values())


class ResizeTests(TestCase):
    timeout = 40

    async def test_sigttinAndSigttouChangeTheWorkersThatAnswer(self) -> None:
        """
        SIGTTIN adds a worker that takes connections; SIGTTOU drains one
        away: afterwards one pid answers again.
        """
        cluster = await ClusterProcess.start(self, "--workers", "1", *APP)

        async def answering() -> set[int]:
            return {int((await get(cluster.url))[1]) for _ in range(6)}

        self.assertEqual(len(await answering()), 1)
        cluster.signal("TTIN")
        await waitUntil(lambda: len(cluster.workers) == 2, 15, "a second worker")
        self.assertEqual(await answering(), set(cluster.workers.values()))
        cluster.signal("TTOU")
        removed = cluster.workers[2]
        await waitUntil(lambda: not pidAlive(removed), 15, "the removed worker to exit")
        self.assertEqual(await answering(), {cluster.workers[1]})
        [line] = cluster.logged(logevents.WORKER_REMOVED)
        self.assertEqual((line["worker_id"], line["worker_pid"]), (2, removed))


class RecyclingTests(TestCase):
    timeout = 40

    async def test_workerPastMaxConnectionsIsReplacedWithoutAFailedRequest(self) -> None:
        """
        With C{--max-connections 10}, a worker that served 10 to 11
        connections is replaced (new worker ready, then the old one drains)
        while requests keep succeeding.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "1", *APP, "--max-connections", "10",
            "--health-interval", "0.2",
        )
        first = cluster.workers[1]
        for _ in range(14):
            code, body = await get(cluster.url)
            self.assertEqual(code, 200)
        await waitUntil(lambda: cluster.workers[1] != first, 15, "the recycled worker")
        [line] = cluster.logged(logevents.WORKER_RECYCLING)
        self.assertEqual((line["worker_id"], line["worker_pid"]), (1, first))
        [step] = cluster.logged(logevents.WORKER_REPLACED)
        self.assertEqual(step["cause"], "recycle")
        code, body = await get(cluster.url)
        self.assertEqual(int(body), cluster.workers[1])
        await waitUntil(lambda: not pidAlive(first), 10, "the old worker to exit")


class CrashWhileServingTests(TestCase):
    timeout = 60

    async def test_poisonRequestEverySecondLeavesAWorkerReady(self) -> None:
        """
        One request a second that kills the worker serving it (C{os._exit}
        in a handler), over two workers: every crashed worker is restarted
        at once (the crash guard's rule: no delay under 30 crashes a minute
        in a slot), a worker is ready at every moment of the master's log,
        and a request sent right after each poison one is answered.  Before,
        each slot's delay doubled with every crash (12.8-25.6 s after 40 s)
        and the service fell to zero.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", "tests.apps.poison.resource", waitReady=2
        )
        poisons = 8
        for _ in range(poisons):
            sent = time.monotonic()
            with self.assertRaises(Exception):
                await get(cluster.url + "poison", timeout=5)
            code, _ = await get(cluster.url, timeout=2)
            self.assertEqual(code, 200)
            await sleep(max(0.0, 1.0 - (time.monotonic() - sent)))
        restarts = await waitUntil(
            lambda: len(cluster.restarts()) >= poisons
            and cluster.restarts(),
            10, "every crash to be restarted",
        )
        guard = ClusterConfig().crashGuard
        for event in restarts:
            self.assertEqual(event["cause"], "crash")
            self.assertLessEqual(event["crashes"], guard.limit)
            self.assertEqual(event["delay"], 0)
        ready: set[int] = set()
        for event in cluster.events:
            key = event.get("cluster_event")
            if key == logevents.WORKER_READY:
                ready.add(event["worker_pid"])
            elif key == logevents.WORKER_EXITED:
                ready.discard(event["worker_pid"])
                self.assertTrue(ready, f"no worker ready after pid {event['worker_pid']} exited")
