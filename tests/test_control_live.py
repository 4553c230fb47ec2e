"""
Integration tests of who may use a real master's control site: the token
over TCP, the peer's uid over a UNIX socket, and C{ctl} with both.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import stat
import sys
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.support import ROOT, ClusterProcess, shortTempDir, testEnvironment, waitUntil
from twisted_cluster import logevents


def operations(cluster: ClusterProcess) -> list[dict[str, Any]]:
    return [e for e in cluster.events
            if e.get("cluster_event") == logevents.CONTROL_OPERATION]


def refusals(cluster: ClusterProcess) -> list[dict[str, Any]]:
    return [e for e in cluster.events
            if e.get("cluster_event") == logevents.CONTROL_REFUSED]


async def fetch(url: str, method: str = "GET", token: str | None = None) -> tuple[int, bytes]:
    """
    One request on a new connection, with the control header and, when
    given, the bearer token; (status, body).
    """
    pool = HTTPConnectionPool(reactor, persistent=False)
    headers = {"X-Cluster-Control": "1"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = await treq.request(method, url, headers=headers, pool=pool, timeout=10)
    return response.code, await response.content()


def unixRequest(path: str, request: bytes, uid: int | None = None) -> bytes:
    """
    Send C{request} on a new connection to the UNIX socket C{path} and read
    the answer (bounded: 10 s).  With C{uid}, connect with that effective
    uid, which is what the kernel reports to the peer (C{SO_PEERCRED}).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    with sock:
        if uid is None:
            sock.connect(path)
        else:
            os.seteuid(uid)
            try:
                sock.connect(path)
            finally:
                os.seteuid(0)
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class TokenTests(TestCase):
    timeout = 60

    async def test_tcpSiteWantsTheTokenThatCtlSends(self) -> None:
        """
        Over TCP, the master writes a token file of mode 0600 named after
        its port; an operation without the token is answered 401 and
        changes nothing (and the refusal is logged); C{ctl} reads the token
        file and scales the cluster, and the operation is logged with its
        peer as authenticated.  The token is in neither the workers'
        environment nor their command line, and the file is removed when
        the master stops.
        """
        runtime = shortTempDir(self)
        env = dict(testEnvironment(), XDG_RUNTIME_DIR=runtime)
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--health-interval", "0.2",
            "--control", "tcp:0:interface=127.0.0.1", env=env,
        )
        [site] = cluster.logged(logevents.CONTROL_LISTENING)
        base = site["address"]
        port = int(base.rstrip("/").rsplit(":", 1)[1])
        [written] = cluster.logged(logevents.CONTROL_TOKEN_WRITTEN)
        path = os.path.join(runtime, "twisted-cluster", f"tcp-{port}.token")
        self.assertEqual(written["token_file"], path)
        status = os.lstat(path)
        self.assertEqual((stat.S_IMODE(status.st_mode), status.st_uid), (0o600, os.getuid()))
        with open(path) as f:
            token = f.read().strip()

        for url, method in ((base + "add", "POST"), (base + "status.json", "GET")):
            code, _ = await fetch(url, method)
            self.assertEqual(code, 401, url)
        code, _ = await fetch(base + "add", "POST", token="not-" + token)
        self.assertEqual(code, 401)
        code, body = await fetch(base + "status.json", token=token)
        self.assertEqual((code, json.loads(body)["cluster"]["target"]), (200, 1))
        code, _ = await fetch(base + "readyz")
        self.assertEqual(code, 200)
        [refusal] = await waitUntil(lambda: refusals(cluster), 5, "the refusal's log")
        self.assertEqual((refusal["reason"], refusal["path"]), ("no token", "/add"))
        self.assertEqual(operations(cluster), [])

        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "twisted_cluster.ctl", "--control", base, "scale", "2"],
            env=env, path=ROOT,
        )
        self.assertEqual(code, 0, err)
        await waitUntil(lambda: len(cluster.workers) == 2, 15, "a second worker")
        [operation] = await waitUntil(lambda: operations(cluster), 5, "the operation's log")
        self.assertEqual(
            (operation["operation"], operation["authenticated"], operation["how"]),
            ("scale", True, "token"),
        )
        self.assertTrue(operation["peer"].startswith("127.0.0.1:"))

        for pid in cluster.workers.values():
            for name in ("environ", "cmdline"):
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    self.assertNotIn(token.encode(), f.read(), name)

        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(), 0)
        self.assertEqual(os.listdir(os.path.join(runtime, "twisted-cluster")), [])

    async def test_ctlWithoutTheTokenIsRefused(self) -> None:
        """
        C{ctl} pointed at a token file that is not the master's gets one
        error line and exit status 1; nothing changes.
        """
        runtime = shortTempDir(self)
        env = dict(testEnvironment(), XDG_RUNTIME_DIR=runtime)
        tokenPath = os.path.join(runtime, "mine.token")
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--control", "tcp:0:interface=127.0.0.1",
            "--control-token", tokenPath, env=env,
        )
        self.assertEqual(stat.S_IMODE(os.stat(tokenPath).st_mode), 0o600)
        [site] = cluster.logged(logevents.CONTROL_LISTENING)
        wrong = os.path.join(runtime, "wrong.token")
        with open(wrong, "w") as f:
            f.write("nope\n")
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "twisted_cluster.ctl", "--control", site["address"],
             "--token-file", wrong, "add"],
            env=env, path=ROOT,
        )
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(b"--token-file", err)
        self.assertEqual(operations(cluster), [])
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(), 0)
        self.assertFalse(os.path.exists(tokenPath))


    async def test_operatorsTokenFileIsUsedAndKept(self) -> None:
        """
        With C{--control-token-from}, the site wants the token of a file
        the operator made; the master does not remove it at stop.
        """
        directory = shortTempDir(self)
        given = os.path.join(directory, "prometheus.token")
        token = "operator-made-token-0123456789"
        with open(given, "w") as f:
            f.write(token + "\n")
        os.chmod(given, 0o640)
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--control", "tcp:0:interface=127.0.0.1",
            "--control-token-from", given,
        )
        [site] = cluster.logged(logevents.CONTROL_LISTENING)
        code, _ = await fetch(site["address"] + "metrics")
        self.assertEqual(code, 401)
        code, _ = await fetch(site["address"] + "metrics", token=token)
        self.assertEqual(code, 200)
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(), 0)
        self.assertEqual(os.listdir(directory), ["prometheus.token"])


class UnprivilegedWorkerTests(TestCase):
    timeout = 60

    async def test_workersRunAsNobodyCannotReadTheToken(self) -> None:
        """
        With C{--user nobody}, the token file (the master's, mode 0600) is
        not readable by the workers' uid, and the token is in neither their
        environment nor their command line.
        """
        try:
            nobody = pwd.getpwnam("nobody").pw_uid
        except KeyError:
            raise self.skipTest("this system has no user 'nobody'") from None
        if os.getuid() != 0:
            raise self.skipTest("--user needs root")
        runtime = shortTempDir(self)
        env = dict(testEnvironment(), XDG_RUNTIME_DIR=runtime)
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--user", "nobody",
            "--control", "tcp:0:interface=127.0.0.1", env=env,
        )
        [written] = cluster.logged(logevents.CONTROL_TOKEN_WRITTEN)
        with open(written["token_file"]) as f:
            token = f.read().strip()
        [pid] = cluster.workers.values()
        with open(f"/proc/{pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        self.assertEqual(set(map(int, uids)), {nobody})
        os.seteuid(nobody)
        try:
            self.assertRaises(PermissionError, open, written["token_file"])
        finally:
            os.seteuid(0)
        for name in ("environ", "cmdline"):
            with open(f"/proc/{pid}/{name}", "rb") as f:
                self.assertNotIn(token.encode(), f.read(), name)


class PeerCredentialTests(TestCase):
    timeout = 60

    async def test_unixSocketLetsInTheMastersUserOnly(self) -> None:
        """
        On a UNIX socket that others may connect to (C{mode=666}), a peer
        of another uid is answered 401 and changes nothing; the master's
        own user gets in, and the log names its uid and pid.
        """
        try:
            nobody = pwd.getpwnam("nobody").pw_uid
        except KeyError:
            raise self.skipTest("this system has no user 'nobody'") from None
        if os.getuid() != 0:
            raise self.skipTest("connecting as another uid needs root")
        directory = shortTempDir(self)
        os.chmod(directory, 0o755)
        path = os.path.join(directory, "c.sock")
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--control", f"unix:{path}:mode=666",
        )
        await waitUntil(lambda: cluster.logged(logevents.CONTROL_LISTENING), 10, "the site")
        add = b"POST /add HTTP/1.0\r\nHost: localhost\r\nX-Cluster-Control: 1\r\n\r\n"
        answer = unixRequest(path, add, uid=nobody)
        self.assertTrue(answer.startswith(b"HTTP/1.0 401"), answer[:100])
        refusal = await waitUntil(lambda: refusals(cluster), 5, "the refusal's log")
        self.assertEqual(refusal[0]["peer_uid"], nobody)
        self.assertEqual(operations(cluster), [])
        answer = unixRequest(path, add)
        self.assertTrue(answer.startswith(b"HTTP/1.0 202"), answer[:100])
        [operation] = await waitUntil(lambda: operations(cluster), 5, "the operation's log")
        self.assertEqual(
            (operation["operation"], operation["peer_uid"], operation["peer_pid"],
             operation["how"]),
            ("add", os.getuid(), os.getpid(), "peer uid"),
        )
