"""
UNIX socket listeners: the socket file belongs to whoever created it.

The master creates the file of a C{unix:PATH} listener, with the mode the
user asked for, and removes it when it stops; a worker that accepts on a
copy (C{--dispatch shared}) neither changes nor removes it, nor shuts the
socket down for the others; a socket systemd passed (C{systemd:domain=UNIX})
is nobody's but systemd's.  Each property is checked in both the shared
and the round-robin mode, with real processes.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
from typing import Any
from unittest import SkipTest

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorSocket
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from tests.support import ClusterProcess, shortTempDir, testEnvironment, waitUntil
from twisted_cluster import logevents
from twisted_cluster._shared.adoptedport import adoptListeningPort

#: Writes its worker's pid and closes.
PID_APP = "tests.apps.simple.factory"

#: Runs the rest of its command line with LISTEN_PID set to its own pid, as
#: systemd does for the process it starts.
AS_SYSTEMD = (
    "import os, sys; os.environ['LISTEN_PID'] = str(os.getpid()); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def askPid(path: str) -> int:
    """
    Connect to the UNIX socket at C{path} and read the serving worker's pid
    (blocking, 10 s at most).
    """
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        return int(s.recv(100))


def fileMode(path: str) -> int:
    """
    The permission bits of the socket file at C{path}; fails unless it is a
    socket.
    """
    info = os.lstat(path)
    assert stat.S_ISSOCK(info.st_mode), f"{path} is not a socket"
    return stat.S_IMODE(info.st_mode)


def listenQueueLength(path: str) -> int:
    """
    The backlog of the listening UNIX socket bound at C{path}, as C{ss}
    reports it (its C{Send-Q} column).
    """
    if shutil.which("ss") is None:
        raise SkipTest("reads the backlog with ss (iproute2), which is not installed")
    out = subprocess.run(["ss", "-xln"], capture_output=True, text=True, check=True).stdout
    [queue] = [line.split()[3] for line in out.splitlines() if f" {path} " in line]
    return int(queue)



class _Connected(Protocol):
    def connectionMade(self) -> None:
        self.factory.made.callback(self.transport)  # type: ignore[attr-defined]


class AdoptListeningPortTests(TestCase):
    """
    L{adoptListeningPort} on a real UNIX socket some other party created
    (here: the test), with the real reactor.
    """

    timeout = 10

    def setUp(self) -> None:
        self.path = os.path.join(shortTempDir(self), "s.sock")
        self.creator = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(self.creator.close)
        self.creator.bind(self.path)
        os.chmod(self.path, 0o640)
        self.creator.listen(300)
        self.creator.setblocking(False)

    async def test_servesAndLeavesSocketAndFileToTheCreator(self) -> None:
        """
        The adopted port serves connections; it does not change the file's
        mode, and once it stopped the file is still there and the
        creator's socket still accepts (it was not shut down).
        """
        factory = Factory.forProtocol(_Connected)
        factory.made = Deferred()  # type: ignore[attr-defined]
        port = adoptListeningPort(reactor, self.creator.fileno(), socket.AF_UNIX, factory)
        self.assertEqual(fileMode(self.path), 0o640)
        client = socket.socket(socket.AF_UNIX)
        self.addCleanup(client.close)
        client.setblocking(False)
        client.connect(self.path)
        transport = await factory.made.addTimeout(5, reactor)  # type: ignore[attr-defined]
        transport.loseConnection()
        await port.stopListening()
        self.assertEqual(fileMode(self.path), 0o640)
        with socket.socket(socket.AF_UNIX) as late:
            late.settimeout(5)
            late.connect(self.path)
            self.creator.setblocking(True)
            self.creator.settimeout(5)
            accepted, _ = self.creator.accept()
            accepted.close()

    async def test_backlogHolds(self) -> None:
        """
        Adopting does not call C{listen} again: the creator's backlog (the
        master's C{--backlog}) holds, rather than Twisted's default of 50.
        """
        port = adoptListeningPort(
            reactor, self.creator.fileno(), socket.AF_UNIX, Factory.forProtocol(Protocol)
        )
        self.addCleanup(port.stopListening)
        self.assertEqual(listenQueueLength(self.path), 300)

    def test_otherFamiliesGoToTheReactor(self) -> None:
        """
        A TCP socket is adopted by the reactor's own C{adoptStreamPort},
        which already leaves a socket it did not create alone.
        """
        fake = MemoryReactor()
        verifyObject(IReactorSocket, fake)
        factory = Factory.forProtocol(Protocol)
        adoptListeningPort(fake, 7, socket.AF_INET, factory)
        self.assertEqual(fake.adoptedPorts, [(7, socket.AF_INET, factory)])


class _UNIXSocketLifeCycle:
    """
    The socket file's life, in one dispatch mode (C{dispatch}).
    """

    timeout = 90
    dispatch: str

    async def startCluster(
        self, listen: str, *args: str, workers: int = 2, **kwargs: Any
    ) -> ClusterProcess:
        cluster = await ClusterProcess.start(
            self, "--workers", str(workers), "--app", PID_APP, "--control", "none",  # type: ignore[arg-type]
            "--dispatch", self.dispatch, "--grace-period", "5", *args,
            listen=listen, waitReady=0, **kwargs,
        )
        await waitUntil(lambda: len(cluster.workers) == workers, 30, f"{workers} ready workers")
        return cluster

    async def served(self, path: str) -> int:
        return await deferToThread(askPid, path)

    async def test_workerLeavingKeepsTheSocketServing(self) -> None:
        """
        A worker removed (SIGTTOU) leaves the socket file where it is, with
        its mode, and the next connections are served by the other worker.
        """
        path = os.path.join(shortTempDir(self), "app.sock")
        cluster = await self.startCluster(f"unix:{path}:mode=600")
        await self.served(path)
        cluster.signal("TTOU")
        [removed] = await waitUntil(
            lambda: [e for e in cluster.logged(logevents.WORKER_EXITED) if "delay" not in e],
            30, "the removed worker's exit",
        )
        self.assertEqual(fileMode(path), 0o600)
        survivors = set(cluster.workers.values()) - {removed["worker_pid"]}
        for _ in range(3):
            self.assertIn(await self.served(path), survivors)
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(30), 0)
        self.assertFalse(os.path.lexists(path), "the master left its socket file")

    async def test_rollingRestartKeepsTheSocketServing(self) -> None:
        """
        After a rolling restart (SIGHUP: every worker replaced), the new
        workers serve on the same socket file.
        """
        path = os.path.join(shortTempDir(self), "app.sock")
        cluster = await self.startCluster(f"unix:{path}")
        before = set(cluster.workers.values())
        cluster.signal("HUP")
        await waitUntil(
            lambda: cluster.logged(logevents.ROLLOUT_DONE),
            60, "the rolling restart",
        )
        self.assertTrue(os.path.exists(path))
        self.assertNotIn(await self.served(path), before)

    async def test_modeAndBacklogAskedForHold(self) -> None:
        """
        C{mode=600} and C{--backlog 300} give the socket file mode 0600 and
        the socket a queue of 300 while workers serve on it (in shared
        mode, after they adopted it).
        """
        path = os.path.join(shortTempDir(self), "app.sock")
        cluster = await self.startCluster(
            f"unix:{path}:mode=600", "--backlog", "300", workers=1
        )
        self.assertEqual(await self.served(path), cluster.workers[1])
        self.assertEqual(fileMode(path), 0o600)
        self.assertEqual(listenQueueLength(path), 300)

    async def test_workersOfAnotherUserServeOnTheMastersSocket(self) -> None:
        """
        Under C{--user nobody}, workers that may not even reach the socket
        file (root's, mode 0600, in a directory only root may enter) serve
        on it, and its mode holds.
        """
        if os.geteuid() != 0:
            raise SkipTest("running workers as another user needs root")
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            raise SkipTest("this system has no user 'nobody'") from None
        directory = shortTempDir(self)
        os.chmod(directory, 0o700)
        path = os.path.join(directory, "app.sock")
        cluster = await self.startCluster(
            f"unix:{path}:mode=600", "--user", "nobody", workers=1
        )
        self.assertEqual(await self.served(path), cluster.workers[1])
        self.assertEqual(fileMode(path), 0o600)

    async def test_socketSystemdPassedIsLeftAtStop(self) -> None:
        """
        C{--listen systemd:domain=UNIX:index=0} serves on the inherited
        socket without changing its file's mode or its backlog; neither a
        worker leaving nor the master stopping removes the file, and
        systemd's socket still listens afterwards.
        """
        path = os.path.join(shortTempDir(self), "app.sock")
        inherited = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(inherited.close)
        inherited.bind(path)
        os.chmod(path, 0o640)
        inherited.listen(16)
        env = testEnvironment()
        env.update(LISTEN_FDS="1", LISTEN_FDNAMES="app")
        cluster = await self.startCluster(
            "systemd:domain=UNIX:index=0", env=env,
            prefix=[sys.executable, "-c", AS_SYSTEMD],
            childFDs={0: "w", 1: "r", 2: "r", 3: inherited.fileno()},
        )
        self.assertIn(await self.served(path), set(cluster.workers.values()))
        self.assertEqual(fileMode(path), 0o640)
        self.assertEqual(listenQueueLength(path), 16)
        cluster.signal("TTOU")
        [removed] = await waitUntil(
            lambda: [e for e in cluster.logged(logevents.WORKER_EXITED) if "delay" not in e],
            30, "the removed worker's exit",
        )
        survivors = set(cluster.workers.values()) - {removed["worker_pid"]}
        self.assertIn(await self.served(path), survivors)
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(30), 0)
        self.assertEqual(fileMode(path), 0o640)
        # What systemd holds still takes connections (the master did not
        # shut the socket down for every holder).
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(path)


class SharedUNIXSocketTests(_UNIXSocketLifeCycle, TestCase):
    dispatch = "shared"


class RoundRobinUNIXSocketTests(_UNIXSocketLifeCycle, TestCase):
    dispatch = "round-robin"
