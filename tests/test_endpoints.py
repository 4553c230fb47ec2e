"""
Tests for the one-line errors of L{twisted_cluster._master.listening.parseEndpoint}
on the production endpoints (C{systemd:} without inherited sockets, C{ssl:}
with a key that does not load), and for the listen queue's length
(C{--backlog}).
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import sys
from unittest import SkipTest

from twisted.internet.testing import MemoryReactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import shortTempDir
from twisted_cluster._master.listening import (
    DEFAULT_BACKLOG,
    ListenError,
    listen,
    ownsBacklog,
    parseEndpoint,
)


class ParseEndpointErrorTests(SynchronousTestCase):
    def test_systemdWithoutInheritedSocketSaysSo(self) -> None:
        """
        A C{systemd:} endpoint outside socket activation is an error that
        names the variables systemd sets, not a traceback.
        """
        error = self.assertRaises(
            ListenError, parseEndpoint, MemoryReactor(), "systemd:domain=INET:index=5"
        )
        self.assertIn("no such socket passed by systemd", str(error))
        self.assertNotIn("\n", str(error))

    def test_sslKeyThatDoesNotLoadIsOneLine(self) -> None:
        """
        A key file that is not a key gives a L{ListenError} naming the
        endpoint (pyOpenSSL's own error type included).
        """
        key = FilePath(self.mktemp())
        key.setContent(b"not a key")
        description = f"ssl:0:privateKey={key.path}"
        error = self.assertRaises(ListenError, parseEndpoint, MemoryReactor(), description)
        self.assertIn(f"bad --listen endpoint {description!r}", str(error))
        self.assertNotIn("\n", str(error))


class MissingTLSLibraryTests(SynchronousTestCase):
    """
    An C{ssl:} endpoint without pyOpenSSL says what to install, in the
    master (parsing C{--listen}) and in a worker (setting up TLS).
    """

    def setUp(self) -> None:
        from twisted.internet import endpoints

        from twisted_cluster._master import listening
        def noOpenSSL(reactor: object, description: str) -> None:
            raise ModuleNotFoundError("No module named 'OpenSSL'", name="OpenSSL")

        self.patch(listening, "serverFromString", noOpenSSL)
        # A worker imports the parser when it sets up TLS.
        self.patch(endpoints, "serverFromString", noOpenSSL)

    def test_masterSuggestsTheTLSExtra(self) -> None:
        e = self.assertRaises(
            ListenError, parseEndpoint, MemoryReactor(), "ssl:443:privateKey=k.pem"
        )
        self.assertEqual(
            str(e),
            "bad --listen endpoint 'ssl:443:privateKey=k.pem': TLS needs "
            "pyOpenSSL, which is not installed: pip install 'twisted-cluster[tls]'",
        )

    def test_workerSuggestsTheTLSExtra(self) -> None:
        from twisted_cluster._worker.wrapping import WrappingError, wrapperFor

        e = self.assertRaises(
            WrappingError, wrapperFor, MemoryReactor(), "ssl:443:privateKey=k.pem"
        )
        self.assertIn("pip install 'twisted-cluster[tls]'", str(e))

    def test_otherMissingModulesAreReportedAsTheyAre(self) -> None:
        from twisted_cluster._shared.endpointstrings import explainParseError

        self.assertEqual(
            explainParseError(ModuleNotFoundError("No module named 'x'", name="x")),
            "No module named 'x'",
        )


def listenQueueLength(sock: socket.socket) -> int:
    """
    The backlog of a listening TCP socket, as Linux reports it: the
    C{tcpi_sacked} field of C{TCP_INFO} (C{sk_max_ack_backlog}).
    """
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 28)[0])


def somaxconn() -> int:
    """
    The kernel's cap on any backlog.
    """
    with open("/proc/sys/net/core/somaxconn") as f:
        return int(f.read())


class BacklogTests(SynchronousTestCase):
    """
    C{--backlog}: the kernel queues that many connections before the master
    accepts them, unless the endpoint string says otherwise.
    """

    def setUp(self) -> None:
        if not sys.platform.startswith("linux"):
            raise SkipTest("reads the backlog with Linux's TCP_INFO")

    def listening(self, description: str, **kwargs: int) -> socket.socket:
        from twisted.internet import reactor

        listener = listen(reactor, description, **kwargs)
        self.addCleanup(listener.close)
        return listener.socket

    def test_defaultIsFarAboveTwisteds(self) -> None:
        sock = self.listening("tcp:0:interface=127.0.0.1")
        self.assertEqual(listenQueueLength(sock), min(DEFAULT_BACKLOG, somaxconn()))
        self.assertGreater(listenQueueLength(sock), 50)

    def test_optionSetsIt(self) -> None:
        sock = self.listening("tcp:0:interface=127.0.0.1", backlog=300)
        self.assertEqual(listenQueueLength(sock), min(300, somaxconn()))

    def test_endpointsOwnBacklogWins(self) -> None:
        sock = self.listening("tcp:0:interface=127.0.0.1:backlog=7", backlog=300)
        self.assertEqual(listenQueueLength(sock), 7)

    def test_systemdSocketsKeepTheirUnits(self) -> None:
        self.assertFalse(ownsBacklog("systemd:domain=INET:index=0"))
        self.assertTrue(ownsBacklog("unix:/run/app.sock"))
        self.assertTrue(ownsBacklog("8080"))


class UNIXListenerTests(TestCase):
    """
    The master creates the socket file of a C{unix:} listener, with the
    mode asked for, and removes it when it closes the listener.
    """

    timeout = 10

    async def test_creatorSetsModeAndRemovesTheFile(self) -> None:
        from twisted.internet import reactor

        path = os.path.join(shortTempDir(self), "app.sock")
        listener = listen(reactor, f"unix:{path}:mode=600:lockfile=0")
        self.assertEqual(stat.S_IMODE(os.lstat(path).st_mode), 0o600)
        self.assertEqual(listener.address(), f"unix:{path}")
        await listener.port.stopListening()
        self.assertFalse(os.path.lexists(path))
