"""
Tests for L{twisted_cluster._worker.adoption}: a worker takes over the descriptors
the master accepted.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorFDSet
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.support import fdIsOpen
from twisted_cluster._worker.adoption import (
    AdoptedConnection,
    adoptConnection,
    immediateReader,
)


@implementer(IReactorFDSet)
class FakeFDSet:
    """
    A reactor that records the descriptors it is asked to watch.
    """

    def __init__(self) -> None:
        self.readers: list[Any] = []
        self.writers: list[Any] = []

    def addReader(self, reader: Any) -> None:
        self.readers.append(reader)

    def addWriter(self, writer: Any) -> None:
        self.writers.append(writer)

    def removeReader(self, reader: Any) -> None:
        if reader in self.readers:
            self.readers.remove(reader)

    def removeWriter(self, writer: Any) -> None:
        if writer in self.writers:
            self.writers.remove(writer)

    def removeAll(self) -> list[Any]:
        everything, self.readers, self.writers = self.readers + self.writers, [], []
        return everything

    def getReaders(self) -> list[Any]:
        return self.readers

    def getWriters(self) -> list[Any]:
        return self.writers


class Recorder(Protocol):
    def __init__(self, addr: Any) -> None:
        self.addr = addr
        self.made = False

    def connectionMade(self) -> None:
        self.made = True


class RecordingFactory(Factory):
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.built: list[Recorder] = []

    def buildProtocol(self, addr: Any) -> Recorder | None:  # type: ignore[override]
        if self.refuse:
            return None
        protocol = Recorder(addr)
        self.built.append(protocol)
        return protocol


def acceptedPair(case: SynchronousTestCase) -> tuple[socket.socket, int]:
    """
    A real TCP connection on 127.0.0.1: the client's socket, and the server
    side's descriptor as the master would hand it over.
    """
    listener = socket.socket()
    case.addCleanup(listener.close)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname(), timeout=5)
    case.addCleanup(client.close)
    server, _ = listener.accept()
    return client, server.detach()


class AdoptConnectionTests(SynchronousTestCase):
    def accepted(self) -> tuple[socket.socket, int]:
        return acceptedPair(self)

    def test_theTransportTakesTheDescriptorOver(self) -> None:
        """
        The transport serves the very descriptor it was given (no copy to
        close), reads from it, and the protocol is connected.
        """
        client, fd = self.accepted()
        reactor = FakeFDSet()
        factory = RecordingFactory()
        transport = adoptConnection(reactor, fd, socket.AF_INET, factory, 7)
        self.addCleanup(os.close, fd)
        assert isinstance(transport, AdoptedConnection)
        self.assertEqual(transport.fileno(), fd)
        self.assertEqual(reactor.readers, [transport])
        [protocol] = factory.built
        self.assertTrue(protocol.made)
        self.assertIs(protocol.transport, transport)
        self.assertEqual(transport.sessionno, 7)

    def test_theProtocolLearnsThePeer(self) -> None:
        client, fd = self.accepted()
        self.addCleanup(os.close, fd)
        factory = RecordingFactory()
        transport = adoptConnection(FakeFDSet(), fd, socket.AF_INET, factory, 1)
        host, port = client.getsockname()
        expected = IPv4Address("TCP", host, port)
        self.assertEqual(factory.built[0].addr, expected)
        assert transport is not None
        self.assertEqual(transport.getPeer(), expected)
        self.assertEqual(transport.getHost().port, client.getpeername()[1])

    def test_describesItselfWhenAsked(self) -> None:
        client, fd = self.accepted()
        self.addCleanup(os.close, fd)
        transport = adoptConnection(FakeFDSet(), fd, socket.AF_INET, RecordingFactory(), 3)
        self.assertEqual(
            repr(transport), f"<Recorder #3 on {client.getpeername()[1]}>"
        )

    def test_describesItselfOnceLostToo(self) -> None:
        """
        A transport may be described in a log line after its connection
        is gone (Twisted then drops its protocol and socket).
        """
        client, fd = self.accepted()
        transport = adoptConnection(FakeFDSet(), fd, socket.AF_INET, RecordingFactory(), 3)
        assert transport is not None
        transport.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(repr(transport), "<Recorder,3,127.0.0.1 closed>")
        self.assertFalse(fdIsOpen(fd))

    def test_aRefusedConnectionIsClosed(self) -> None:
        client, fd = self.accepted()
        result = adoptConnection(
            FakeFDSet(), fd, socket.AF_INET, RecordingFactory(refuse=True), 1
        )
        self.assertIsNone(result)
        self.assertFalse(fdIsOpen(fd))
        self.assertEqual(client.recv(10), b"")

    def test_aClientGoneBeforeAdoptionRaisesAndIsClosed(self) -> None:
        """
        A socket with no peer (the client reset it while it waited) raises
        L{OSError}, and its descriptor does not leak.
        """
        unconnected = socket.socket()
        fd = unconnected.detach()
        reactor = FakeFDSet()
        self.assertRaises(
            OSError, adoptConnection, reactor, fd, socket.AF_INET, RecordingFactory(), 1
        )
        self.assertFalse(fdIsOpen(fd))
        self.assertEqual(reactor.readers, [])

    def test_otherFamiliesGoThroughTheReactor(self) -> None:
        """
        A C{unix:} listener's connections are adopted by the reactor's own
        C{adoptStreamConnection} (which keeps a copy), and the descriptor
        received is closed.
        """
        ours, theirs = socket.socketpair()
        self.addCleanup(theirs.close)
        fd = ours.detach()
        reactor = MemoryReactor()
        factory = RecordingFactory()
        adoptConnection(reactor, fd, socket.AF_UNIX, factory, 1)
        self.assertEqual(
            reactor.adoptedStreamConnections, [(fd, socket.AF_UNIX, factory)]
        )
        self.assertFalse(fdIsOpen(fd))


class Collector(Protocol):
    """
    Keeps what it receives; optionally pauses its transport as soon as it is
    connected (as an app applying back-pressure would).
    """

    def __init__(self, pause: bool = False) -> None:
        self.pause = pause
        self.received = b""

    def connectionMade(self) -> None:
        if self.pause:
            self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class ReadAtOnceTests(SynchronousTestCase):
    """
    L{immediateReader} reads what an adopted connection already received within
    the turn that adopted it, through a real (not running) epoll reactor.
    """

    def adopted(self, pause: bool = False) -> tuple[Any, Collector, socket.socket]:
        from twisted.internet.epollreactor import EPollReactor

        reactor = EPollReactor()
        self.addCleanup(reactor._poller.close)
        client, fd = acceptedPair(self)
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        protocol = Collector(pause)
        transport = adoptConnection(
            reactor, fd, socket.AF_INET, Factory.forProtocol(lambda: protocol), 1
        )
        assert transport is not None
        self.addCleanup(transport.connectionLost, Failure(ConnectionDone()))
        return reactor, protocol, client

    def test_waitingRequestIsReadInTheSameTurn(self) -> None:
        reactor, protocol, _ = self.adopted()
        self.assertEqual(protocol.received, b"")
        immediateReader(reactor)([protocol.transport])
        self.assertEqual(protocol.received, b"GET / HTTP/1.1\r\n\r\n")

    def test_pausedTransportIsLeftAlone(self) -> None:
        reactor, protocol, _ = self.adopted(pause=True)
        immediateReader(reactor)([protocol.transport])
        self.assertEqual(protocol.received, b"")

    def test_reactorWithoutPollHandlingReadsLater(self) -> None:
        """
        A reactor without poll-like read handling is left to read at its
        next turn: nothing is read now.
        """
        reads: list[int] = []

        class Transport:
            def fileno(self) -> int:
                return 7

            def doRead(self) -> None:
                reads.append(1)

        immediateReader(MemoryReactor())([Transport()])
        self.assertEqual(reads, [])
