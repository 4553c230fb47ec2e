"""
The HAProxy example (examples/haproxy/haproxy.cfg) under load: two
C{twist cluster} instances behind Debian's HAProxy on 127.0.0.1, with the
PROXY protocol and /readyz health checks; one instance is rolled (SIGHUP)
and the other stopped (SIGTERM) and started again while clients keep
sending requests.  Not one request may fail.

Skipped when C{haproxy} is not installed (C{apt-get install haproxy}).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections import Counter
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from tests.support import ROOT, ClusterProcess, pidAlive, sleep, waitUntil
from tests.test_deployment import controlURL
from twisted_cluster import logevents

EXAMPLE = os.path.join(ROOT, "examples", "haproxy", "haproxy.cfg")
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None
)


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on now.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Quiet(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended = False

    def outReceived(self, data: bytes) -> None:
        self.output = (self.output + data)[-4096:]

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended = True


class Load:
    """
    C{clients} loops of GET requests over keep-alive connections until
    stopped; counts answers by worker pid and every failure.
    """

    def __init__(self, url: str, clients: int) -> None:
        self._url = url
        self._clients = clients
        self._running = True
        self.byPid: Counter[int] = Counter()
        self.failures: list[str] = []
        self._done: Any = None

    def start(self) -> None:
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = self._clients
        agent = Agent(reactor, pool=pool)
        self._pool = pool
        self._done = gatherResults(
            [ensureDeferred(self._client(agent)) for _ in range(self._clients)]
        )

    async def _client(self, agent: Agent) -> None:
        while self._running:
            try:
                response = await treq.get(self._url, agent=agent, timeout=10)
                body = await response.content()
                if response.code != 200:
                    self.failures.append(f"status {response.code}")
                else:
                    self.byPid[json.loads(body)["pid"]] += 1
            except Exception as e:
                self.failures.append(repr(e))
            await sleep(0.005)

    async def stop(self) -> None:
        self._running = False
        await self._done
        await self._pool.closeCachedConnections()

    @property
    def served(self) -> int:
        return sum(self.byPid.values())


class HAProxyExampleTests(TestCase):
    timeout = 90

    def setUp(self) -> None:
        if HAPROXY is None:
            raise self.skipTest("haproxy is not installed (apt-get install haproxy)")

    async def startInstance(self, port: int, control: int) -> ClusterProcess:
        return await ClusterProcess.start(
            self, "--workers", "1", "--app", "tests.apps.deploy.resource",
            "--control", f"tcp:{control}:interface=127.0.0.1", "--grace-period", "10",
            listen=f"haproxy:tcp:{port}:interface=127.0.0.1",
        )

    def startHAProxy(self, ports: dict[str, int]) -> None:
        with open(EXAMPLE) as f:
            config = f.read()
        for old, new in [
            ("127.0.0.1:8080", f"127.0.0.1:{ports['front']}"),
            ("127.0.0.1:8081 ", f"127.0.0.1:{ports['a']} "),
            ("127.0.0.1:8082 ", f"127.0.0.1:{ports['b']} "),
            ("check port 9101", f"check port {ports['ca']}"),
            ("check port 9102", f"check port {ports['cb']}"),
        ]:
            self.assertIn(old, config)
            config = config.replace(old, new)
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(config)
        self.haproxy = _Quiet()
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            self.haproxy, HAPROXY, [HAPROXY, "-db", "-f", path], env={}, path=ROOT,
        )
        pid = transport.pid

        async def kill() -> None:
            if pidAlive(pid):
                os.kill(pid, 9)
            await waitUntil(lambda: self.haproxy.ended, 10, "haproxy to exit")

        self.addCleanup(kill)

    async def test_rollingAndRestartingInstancesBehindHAProxyLoseNoRequest(self) -> None:
        """
        Under load through HAProxy: a rolling restart (SIGHUP) of instance
        A, then a graceful stop (SIGTERM) and a new start of instance B.
        Every request succeeds, the app sees the client's real address, and
        the new B serves again once its /readyz passes HAProxy's checks.
        """
        ports = {name: freePort() for name in ["front", "a", "b", "ca", "cb"]}
        a, b = await gatherResults([
            ensureDeferred(self.startInstance(ports["a"], ports["ca"])),
            ensureDeferred(self.startInstance(ports["b"], ports["cb"])),
        ])
        self.startHAProxy(ports)
        front = f"http://127.0.0.1:{ports['front']}/"
        pids = {"a": set(a.workers.values()), "b": set(b.workers.values())}

        async def bothUp() -> bool:
            seen: set[int] = set()
            for _ in range(4):
                try:
                    response = await treq.get(front, pool=HTTPConnectionPool(reactor, False))
                except ConnectionRefusedError:
                    return False  # HAProxy is not listening yet
                body = json.loads(await response.content())
                self.assertEqual(body["host"], "127.0.0.1")
                seen.add(body["pid"])
            return bool(seen & pids["a"]) and bool(seen & pids["b"])

        deadline = reactor.seconds() + 15  # type: ignore[attr-defined]
        while not await bothUp():
            self.assertLess(reactor.seconds(), deadline)  # type: ignore[attr-defined]
            await sleep(0.2)

        load = Load(front, clients=4)
        load.start()
        await sleep(1)
        a.signal("HUP")
        await waitUntil(
            lambda: a.logged(logevents.ROLLOUT_DONE), 20, "A's rolling restart")
        pids["a"] |= set(a.workers.values())
        await sleep(0.5)
        b.signal("TERM")
        self.assertEqual(await b.waitExit(20), 0)
        b2 = await self.startInstance(ports["b"], ports["cb"])
        await waitUntil(lambda: controlURL(b2), 10, "B's control site")
        await waitUntil(lambda: load.byPid.keys() & set(b2.workers.values()), 15,
                        "the new B to get requests from HAProxy")
        await sleep(0.5)
        await load.stop()
        self.assertEqual(load.failures, [])
        self.assertGreater(load.served, 100)
        servedBy = {name: sum(n for pid, n in load.byPid.items() if pid in group)
                    for name, group in [("a", pids["a"]), ("b", pids["b"]),
                                        ("b2", set(b2.workers.values()))]}
        self.assertTrue(all(servedBy.values()), servedBy)
