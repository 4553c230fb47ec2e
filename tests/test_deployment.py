"""
Integration tests of the production deployment features: TLS done by the
workers, the PROXY protocol, systemd socket activation, workers running as
an unprivileged user, the PID file and readiness during a graceful stop.

Real master and worker processes, real sockets on 127.0.0.1, every wait
bounded, every process killed by pid.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import struct
import sys
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.ssl import Certificate
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

from tests.support import ClusterProcess, pidAlive, sleep, testEnvironment, waitUntil
from tests.test_wrapping import selfSignedPEM
from twisted_cluster import logevents

PEER_PAGE = "tests.apps.deploy.resource"
PEER_PROTOCOL = "tests.apps.deploy.factory"


async def get(url: str, agent: Any = None, timeout: float = 10) -> tuple[int, bytes]:
    """
    One GET on a new connection: (status, body).
    """
    if agent is None:
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    response = await treq.get(url, agent=agent, timeout=timeout)
    return response.code, await response.content()


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


async def exchange(port: int, data: bytes) -> bytes:
    """
    Connect, send C{data}, read until the server closes (bounded by a
    5 second socket timeout).
    """
    return await deferToThread(_exchange, port, data)


def proxyV2Header(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """
    A PROXY protocol version 2 header for a TCP over IPv4 connection.
    """
    addresses = (
        socket.inet_aton(source[0])
        + socket.inet_aton(destination[0])
        + struct.pack("!HH", source[1], destination[1])
    )
    return (
        b"\r\n\r\n\x00\r\nQUIT\n"
        + bytes([0x21, 0x11])
        + struct.pack("!H", len(addresses))
        + addresses
    )


def writeCertificate(directory: FilePath) -> tuple[FilePath, FilePath]:
    """
    A fresh self-signed certificate for localhost and its key (mode 0600)
    in C{directory}.
    """
    certPEM, keyPEM = selfSignedPEM()
    directory.makedirs(ignoreExistingDirectory=True)
    cert, key = directory.child("cert.pem"), directory.child("key.pem")
    cert.setContent(certPEM)
    key.setContent(keyPEM)
    key.chmod(0o600)
    return cert, key


def httpsAgent(cert: FilePath) -> Agent:
    """
    An agent that trusts only C{cert} and opens a new connection per request.
    """
    policy = BrowserLikePolicyForHTTPS(trustRoot=Certificate.loadPEM(cert.getContent()))
    return Agent(reactor, contextFactory=policy,
                 pool=HTTPConnectionPool(reactor, persistent=False))


def controlURL(cluster: ClusterProcess) -> str | None:
    """
    The control site's URL, once the master logged it.
    """
    for event in cluster.events:
        if event.get("cluster_event") == logevents.CONTROL_LISTENING:
            return str(event["address"])
    return None


def processUid(pid: int) -> int:
    """
    The real uid of process C{pid}.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


class TLSTests(TestCase):
    timeout = 60

    async def test_sslListenerServesHTTPSWithTheGivenCertificate(self) -> None:
        """
        C{--listen ssl:...} serves HTTPS: a client that trusts only the
        self-signed certificate made here completes the handshake and the
        app sees a secure request; a plain HTTP request on the same port
        gets no HTTP answer.
        """
        cert, key = writeCertificate(FilePath(self.mktemp()))
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", PEER_PAGE, "--control", "none",
            listen=f"ssl:0:interface=127.0.0.1:privateKey={key.path}:certKey={cert.path}",
        )
        agent = httpsAgent(cert)
        for _ in range(2):
            code, body = await get(f"https://localhost:{cluster.port}/", agent)
            self.assertEqual(code, 200)
            self.assertTrue(json.loads(body)["secure"])
        answer = await exchange(cluster.port, b"GET / HTTP/1.0\r\n\r\n")
        self.assertNotIn(b"HTTP/1.", answer)


class ProxyProtocolTests(TestCase):
    timeout = 60

    async def startProxied(self) -> ClusterProcess:
        return await ClusterProcess.start(
            self, "--workers", "1", "--app", PEER_PROTOCOL, "--control", "none",
            listen="haproxy:tcp:0:interface=127.0.0.1",
        )

    async def test_proxyV1HeaderGivesTheAppTheClientAddress(self) -> None:
        """
        Behind C{haproxy:tcp:...}, a PROXY v1 header's source address is
        the client address the app sees.
        """
        cluster = await self.startProxied()
        header = f"PROXY TCP4 198.51.100.23 127.0.0.1 40123 {cluster.port}\r\n"
        answer = await exchange(cluster.port, header.encode() + b"hello\n")
        self.assertEqual(answer, b"198.51.100.23 40123\n")

    async def test_proxyV2HeaderGivesTheAppTheClientAddress(self) -> None:
        """
        The binary PROXY v2 header works the same way.
        """
        cluster = await self.startProxied()
        header = proxyV2Header(("203.0.113.99", 50999), ("127.0.0.1", cluster.port))
        answer = await exchange(cluster.port, header + b"hello\n")
        self.assertEqual(answer, b"203.0.113.99 50999\n")


#: Runs the rest of its command line with LISTEN_PID set to its own pid, as
#: systemd does for the process it starts.
_AS_SYSTEMD = (
    "import os, sys; os.environ['LISTEN_PID'] = str(os.getpid()); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class SocketActivationTests(TestCase):
    timeout = 60

    async def test_systemdEndpointServesTheInheritedSocket(self) -> None:
        """
        C{--listen systemd:domain=INET:index=0} serves on the listening
        socket inherited as fd 3 with LISTEN_FDS/LISTEN_PID (what systemd
        passes): the master binds nothing itself, and connections made to
        the inherited socket before the master even started are served.
        """
        inherited = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(inherited.close)
        inherited.bind(("127.0.0.1", 0))
        inherited.listen(16)
        port = inherited.getsockname()[1]
        early = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.addCleanup(early.close)
        early.sendall(b"GET / HTTP/1.0\r\n\r\n")
        env = testEnvironment()
        env.update(LISTEN_FDS="1", LISTEN_FDNAMES="http")
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", PEER_PAGE, "--control", "none",
            listen="systemd:domain=INET:index=0", env=env,
            prefix=[sys.executable, "-c", _AS_SYSTEMD],
            childFDs={0: "w", 1: "r", 2: "r", 3: inherited.fileno()},
        )
        inherited.close()
        self.assertEqual(cluster.port, port)
        answer = await deferToThread(early.recv, 65536)
        self.assertIn(b"200 OK", answer)
        code, body = await get(f"http://127.0.0.1:{port}/")
        self.assertEqual(code, 200)


class PrivilegeDropTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise self.skipTest("dropping privileges needs the tests to run as root")
        try:
            self.nobody = pwd.getpwnam("nobody")
        except KeyError:
            raise self.skipTest("this system has no user 'nobody'") from None

    async def test_workersRunAsUserWhileMasterStaysRoot(self) -> None:
        """
        With C{--user nobody}, the master stays root and the workers run as
        nobody, unable to regain root; they still serve TLS with a key only
        root may read (they load it before switching user).
        """
        cert, key = writeCertificate(FilePath(self.mktemp()))
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", PEER_PAGE, "--control", "none",
            "--user", "nobody", waitReady=2,
            listen=f"ssl:0:interface=127.0.0.1:privateKey={key.path}:certKey={cert.path}",
        )
        assert cluster.pid is not None
        self.assertEqual(processUid(cluster.pid), 0)
        for pid in cluster.workers.values():
            self.assertEqual(processUid(pid), self.nobody.pw_uid)
        code, body = await get(f"https://localhost:{cluster.port}/", httpsAgent(cert))
        seen = json.loads(body)
        self.assertEqual((code, seen["uid"], seen["euid"], seen["gid"]),
                         (200, self.nobody.pw_uid, self.nobody.pw_uid, self.nobody.pw_gid))


class PIDFileTests(TestCase):
    timeout = 60

    async def test_pidfileHeldWhileRunningAndRemovedOnExit(self) -> None:
        """
        C{--pidfile} holds the master's pid while it runs; a second master
        on the same file refuses to start (exit 1, one line); the file is
        gone after a graceful stop.
        """
        path = os.path.abspath(self.mktemp())
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--control", "none", "--pidfile", path,
        )
        with open(path) as f:
            self.assertEqual(int(f.read()), cluster.pid)
        second = await ClusterProcess.start(
            self, "--workers", "1", "--control", "none", "--pidfile", path, waitReady=0,
        )
        self.assertEqual(await second.waitExit(30), 1)
        self.assertIn(f"pid {cluster.pid} is running".encode(), second.stderr)
        self.assertEqual(second.started, set())
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(30), 0)
        self.assertFalse(os.path.exists(path))


class ReadinessTests(TestCase):
    timeout = 60

    async def test_readinessTurnsFalseOnSigtermWhileRequestsFinish(self) -> None:
        """
        C{/readyz} answers 200 while the cluster serves and 503 as soon as
        SIGTERM arrives, while a request in flight is still being finished
        within the grace period; C{/healthz} stays 200 meanwhile.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", PEER_PAGE, "--grace-period", "20",
            "--control", "tcp:0:interface=127.0.0.1",
        )
        control = await waitUntil(lambda: controlURL(cluster), 10, "the control site")
        code, body = await get(control + "readyz")
        self.assertEqual((code, json.loads(body)["ok"]), (200, True))
        inFlight = ensureDeferred(get(cluster.url + "?delay=4"))
        await sleep(0.5)
        cluster.signal("TERM")
        answers: list[tuple[int, bytes]] = []

        async def notReady() -> bool:
            answers.append(await get(control + "readyz"))
            return answers[-1][0] == 503

        deadline = reactor.seconds() + 3  # type: ignore[attr-defined]
        while not await notReady():
            self.assertLess(reactor.seconds(), deadline, "readyz still 200")  # type: ignore[attr-defined]
            await sleep(0.1)
        self.assertEqual(json.loads(answers[-1][1])["reason"], "stopping")
        self.assertFalse(inFlight.called, "the request in flight finished too early")
        code, _ = await get(control + "healthz")
        self.assertEqual(code, 200)
        code, _ = await inFlight
        self.assertEqual(code, 200)
        self.assertEqual(await cluster.waitExit(30), 0)
        self.assertFalse(any(pidAlive(pid) for pid in cluster.started))
