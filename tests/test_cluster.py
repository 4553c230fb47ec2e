"""
Integration tests of C{twist cluster}: real master and worker processes,
real sockets on 127.0.0.1, every wait bounded, every process killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.support import (
    ROOT,
    TWISTD,
    ClusterProcess,
    pidAlive,
    shortTempDir,
    testEnvironment,
    waitUntil,
)
from twisted_cluster import logevents


async def get(url: str, timeout: float = 10) -> tuple[int, dict, bytes]:
    """
    One GET on a new connection; (status, headers, body).
    """
    pool = HTTPConnectionPool(reactor, persistent=False)
    response = await treq.get(url, pool=pool, timeout=timeout)
    body = await response.content()
    headers = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
    return response.code, headers, body


def twistCluster(*args: str, cwd: str = ROOT, timeout: float = 30) -> subprocess.CompletedProcess:
    """
    Run C{twist cluster ARGS} to completion (for inputs that must fail).
    """
    return subprocess.run(
        [sys.executable, "-m", "twisted", "--log-format=json", "cluster", *args],
        cwd=cwd, env=testEnvironment(), capture_output=True, timeout=timeout, text=True,
    )


class RoundRobinTests(TestCase):
    timeout = 60

    async def test_newConnectionsSpreadEvenlyOverWorkers(self) -> None:
        """
        3 workers and 30 sequential new connections give 10 per worker.
        """
        cluster = await ClusterProcess.start(self, "--workers", "3", waitReady=3)
        served = Counter()
        for _ in range(30):
            code, headers, body = await get(cluster.url)
            self.assertEqual(code, 200)
            served[headers["x-cluster-worker"]] += 1
        self.assertEqual(served, {"1": 10, "2": 10, "3": 10})

    async def test_defaultPageShowsTheWorkers(self) -> None:
        cluster = await ClusterProcess.start(self, "--workers", "2", waitReady=2)
        code, headers, body = await get(cluster.url)
        self.assertEqual(code, 200)
        for pid in cluster.workers.values():
            self.assertIn(f"<td>{pid}</td>".encode(), body)
        self.assertIn(b"served by <b>worker " + headers["x-cluster-worker"].encode(), body)


class AppKindsTests(TestCase):
    timeout = 60

    async def test_resourceApp(self) -> None:
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", "tests.apps.simple.resource", waitReady=2
        )
        pids = set()
        for _ in range(4):
            code, _, body = await get(cluster.url)
            pids.add(int(body))
        self.assertEqual(pids, set(cluster.workers.values()))

    async def test_protocolFactoryAppOverUnixSocket(self) -> None:
        path = os.path.join(shortTempDir(self), "app.sock")
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", "tests.apps.simple.factory",
            listen=f"unix:{path}", waitReady=0,
        )
        await waitUntil(lambda: len(cluster.workers) == 2, 30, "2 ready workers")
        pids = set()
        for _ in range(4):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(path)
                pids.add(int(s.recv(100)))
        self.assertEqual(pids, set(cluster.workers.values()))

    async def test_anAppFailingOnOneConnectionServesTheNext(self) -> None:
        """
        An exception from the app's factory costs the one connection it
        hit (closed, the failure logged), not the worker.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", "tests.apps.simple.flakyFactory"
        )
        [pid] = cluster.workers.values()
        answers = []
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", cluster.port), 10) as s:
                answers.append(s.recv(100))
        self.assertEqual(answers, [b"", str(pid).encode()])
        await waitUntil(
            lambda: cluster.logged(logevents.APP_CONNECTION_FAILED, worker_pid=pid),
            10, "the failure in the log",
        )
        self.assertEqual(list(cluster.workers.values()), [pid])
        self.assertEqual(cluster.started, {pid})

    async def test_tcp6(self) -> None:
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback here")
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", "tests.apps.simple.resource",
            listen="tcp6:0:interface=\\:\\:1",
        )
        port = cluster.logged(logevents.LISTENING)
        address = port[0]["address"]
        self.assertTrue(address.startswith("[::1]:"), address)
        with socket.create_connection(("::1", int(address.rsplit(":", 1)[1])), 10) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            response = b""
            while chunk := s.recv(4096):
                response += chunk
        self.assertEqual(int(response.split(b"\r\n\r\n", 1)[1]), cluster.workers[1])

    async def test_moduleInTheCurrentDirectoryIsImportable(self) -> None:
        project = os.path.abspath(self.mktemp())
        os.makedirs(project)
        with open(os.path.join(project, "mymod.py"), "w") as f:
            f.write(
                "from twisted.web.resource import Resource\n"
                "class Page(Resource):\n"
                "    isLeaf = True\n"
                "    def render_GET(self, request):\n"
                "        return b'from mymod'\n"
                "resource = Page()\n"
            )
        env = testEnvironment()
        env["CLUSTER_TEST_MARKER"] = "inherited"
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", "mymod.resource", cwd=project, env=env
        )
        code, _, body = await get(cluster.url)
        self.assertEqual(body, b"from mymod")
        with open(f"/proc/{cluster.workers[1]}/environ", "rb") as f:
            self.assertIn(b"CLUSTER_TEST_MARKER=inherited", f.read().split(b"\0"))
        self.assertEqual(os.readlink(f"/proc/{cluster.workers[1]}/cwd"), project)

    async def test_workerLogsReachTheMasterLogWithIdAndPid(self) -> None:
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", "tests.apps.simple.logging"
        )
        await get(cluster.url)
        pid = cluster.workers[1]

        def forwarded():
            logged = [e for e in cluster.events if e.get("log_format") == "served {path}"]
            printed = [e for e in cluster.events if e.get("line") == "printed by the app"]
            return logged and printed and (logged[0], printed[0])

        logged, printed = await waitUntil(forwarded, 10, "forwarded log lines")
        self.assertEqual((logged["worker_id"], logged["worker_pid"]), (1, pid))
        self.assertIn(f"worker-1[{pid}]", logged["log_namespace"])
        self.assertEqual((printed["worker_id"], printed["worker_pid"]), (1, pid))


class LifeCycleTests(TestCase):
    timeout = 60

    async def test_killedWorkerIsReplacedAndRequestsSucceed(self) -> None:
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", "tests.apps.simple.resource", waitReady=2
        )
        victim = cluster.workers[1]
        os.kill(victim, signal.SIGKILL)
        await waitUntil(lambda: cluster.workers[1] != victim, 20, "a replacement worker")
        self.assertFalse(pidAlive(victim))
        pids = set()
        for _ in range(10):
            code, _, body = await get(cluster.url)
            self.assertEqual(code, 200)
            pids.add(int(body))
        self.assertEqual(pids, set(cluster.workers.values()))
        self.assertNotIn(victim, pids)

    async def test_sigtermStopsEverythingAndExitsZero(self) -> None:
        cluster = await ClusterProcess.start(self, "--workers", "3", waitReady=3)
        await get(cluster.url)
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(30), 0)
        await waitUntil(
            lambda: not any(pidAlive(p) for p in cluster.started), 10, "workers gone"
        )

    async def test_sigintStopsEverythingAndExitsZero(self) -> None:
        cluster = await ClusterProcess.start(self, "--workers", "2", waitReady=2)
        cluster.signal("INT")
        self.assertEqual(await cluster.waitExit(30), 0)
        await waitUntil(
            lambda: not any(pidAlive(p) for p in cluster.started), 10, "workers gone"
        )

    async def test_twistdRunsTheSamePlugin(self) -> None:
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", "tests.apps.simple.resource",
            program=TWISTD, waitReady=2,
        )
        pids = {int((await get(cluster.url))[2]) for _ in range(4)}
        self.assertEqual(pids, set(cluster.workers.values()))
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(30), 0)
        await waitUntil(
            lambda: not any(pidAlive(p) for p in cluster.started), 10, "workers gone"
        )

    async def test_repeatedSigtermStillDrainsGracefully(self) -> None:
        """
        A second TERM (C{timeout}, a process-group kill) does not turn the
        graceful stop into a kill.
        """
        cluster = await ClusterProcess.start(self, "--workers", "2", waitReady=2)
        cluster.signal("TERM")
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(30), 0)
        exits = [e for e in cluster.logged(logevents.WORKER_EXITED) if "delay" not in e]
        self.assertEqual(sorted(e["how"] for e in exits), ["exit 0", "exit 0"])

    async def test_workersExitWhenTheMasterIsKilled(self) -> None:
        cluster = await ClusterProcess.start(self, "--workers", "2", waitReady=2)
        cluster.signal("KILL")
        await cluster.waitExit(10)
        await waitUntil(
            lambda: not any(pidAlive(p) for p in cluster.started), 15, "orphans to exit"
        )

    async def test_connectionsWaitWhileNoWorkerIsReady(self) -> None:
        """
        A client that connects before any worker is ready is served, not
        refused: the listening socket is bound first, accepting starts at the
        first Ready.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", "tests.apps.simple.resource", waitReady=0
        )
        await waitUntil(lambda: cluster.port is not None, 20, "the port")
        code, _, body = await get(cluster.url, timeout=30)
        self.assertEqual(code, 200)
        self.assertEqual(int(body), cluster.workers[1])


class BadInputTests(TestCase):
    """
    Bad input: one clear line on stderr, non-zero exit, no process left.
    """

    timeout = 60

    def assertOneLineError(self, result: subprocess.CompletedProcess, *fragments: str) -> None:
        self.assertNotEqual(result.returncode, 0)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("twist cluster: error: "), lines[0])
        for fragment in fragments:
            self.assertIn(fragment, lines[0])
        self.assertNotIn("Traceback", result.stderr)

    def test_unknownModule(self) -> None:
        self.assertOneLineError(
            twistCluster("--app", "nosuchmodule.resource"), "no module named 'nosuchmodule'"
        )

    def test_attributeThatIsNotAnApp(self) -> None:
        self.assertOneLineError(
            twistCluster("--app", "tests.apps.simple.notAnApp"), "int object is not an IResource"
        )

    def test_zeroWorkers(self) -> None:
        self.assertOneLineError(twistCluster("--workers", "0"), "--workers")

    def test_malformedEndpoint(self) -> None:
        self.assertOneLineError(twistCluster("--listen", "tcp:notaport"), "tcp:notaport")
        self.assertOneLineError(twistCluster("--listen", "nosuchkind:80"), "nosuchkind:80")

    def test_portInUse(self) -> None:
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = twistCluster("--listen", f"tcp:{port}:interface=127.0.0.1")
        self.assertOneLineError(result, "Address already in use")
        self.assertNotIn("started", result.stdout)

    async def test_appFailingInEveryWorkerStopsTheMasterOnce(self) -> None:
        """
        The master cannot see this error (it does not call the app): every
        worker fails, the master shows the real error once and exits 1
        instead of restarting workers forever.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "3", "--app", "tests.apps.simple.makeBroken", waitReady=0
        )
        self.assertEqual(await cluster.waitExit(30), 1)
        lines = cluster.stderr.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("ValueError: the database is not there", lines[0])
        tracebacks = [t for t in cluster.texts() if "the database is not there" in t]
        self.assertEqual(len([t for t in tracebacks if "Traceback" in t]), 1, tracebacks)
        self.assertLessEqual(len(cluster.started), 3)
        await waitUntil(
            lambda: not any(pidAlive(p) for p in cluster.started), 10, "workers gone"
        )
