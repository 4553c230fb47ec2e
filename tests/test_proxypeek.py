"""
Tests for L{twisted_cluster._master.proxypeek}: the master finds the client behind
a PROXY protocol header without consuming it.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster._master.proxypeek import (
    INCOMPLETE,
    PEEK_TIMEOUT,
    RETRY_PARTIAL,
    HeaderPeeker,
    clientAddress,
)

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command: int, family: int, addresses: bytes) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", command, family, len(addresses)) + addresses


def v2TCP4(source: str, port: int) -> bytes:
    return v2(0x21, 0x11, socket.inet_aton(source) + socket.inet_aton("10.0.0.1")
              + struct.pack("!HH", port, 443))


def v2TCP6(source: str, port: int) -> bytes:
    return v2(0x21, 0x21, socket.inet_pton(socket.AF_INET6, source)
              + socket.inet_pton(socket.AF_INET6, "::1") + struct.pack("!HH", port, 443))


class ClientAddressTests(SynchronousTestCase):
    def test_v1(self) -> None:
        self.assertEqual(
            clientAddress(b"PROXY TCP4 198.51.100.7 10.0.0.1 40123 443\r\nGET / HTTP/1.1"),
            ("198.51.100.7", 40123),
        )
        self.assertEqual(
            clientAddress(b"PROXY TCP6 2001:db8::7 ::1 40123 443\r\n"),
            ("2001:db8::7", 40123),
        )

    def test_v2(self) -> None:
        self.assertEqual(clientAddress(v2TCP4("203.0.113.9", 5000) + b"GET"),
                         ("203.0.113.9", 5000))
        self.assertEqual(clientAddress(v2TCP6("2001:db8::9", 5001)), ("2001:db8::9", 5001))

    def test_aHeaderInPartIsIncomplete(self) -> None:
        for whole in (b"PROXY TCP4 198.51.100.7 10.0.0.1 40123 443\r\n",
                      v2TCP4("203.0.113.9", 5000)):
            for cut in (1, 5, 12, 20, len(whole) - 1):
                self.assertIs(clientAddress(whole[:cut]), INCOMPLETE, (whole, cut))

    def test_noClientNamed(self) -> None:
        """
        No address to key on: the balancer's own checks (C{UNKNOWN},
        C{LOCAL}), other families, malformed headers, and data that is no
        PROXY header.
        """
        for data in (
            b"PROXY UNKNOWN\r\n",
            b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 port 2\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 99999 2\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 +5 2\r\n",
            b"PROXY TCP4 999.1.1.1 10.0.0.1 5 2\r\n",
            b"PROXY TCP4 1.2.3.4\x00 10.0.0.1 5 2\r\n",
            b"PROXY TCP4 2001:db8::1 ::1 5 2\r\n",
            "PROXY TCP4 1.2.3.4 10.0.0.1 \u0665 2\r\n".encode("utf-8"),
            b"PROXY " + b"x" * 120,
            v2(0x20, 0x00, b""),
            v2(0x21, 0x31, b"\x00" * 216),
            v2(0x21, 0x11, b"\x00" * 4),
            b"GET / HTTP/1.1\r\n",
        ):
            self.assertIsNone(clientAddress(data), data)


class HeaderPeekerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.dispatched: list[tuple[list[Any], list[Any]]] = []
        self.peeker = HeaderPeeker(
            self.reactor, socket.AF_UNIX,
            lambda connections, peers: self.dispatched.append((connections, peers)),
        )

    def connection(self) -> tuple[socket.socket, int]:
        """
        A connected pair standing in for a proxied connection: the
        balancer's side, and the accepted descriptor.
        """
        balancer, accepted = socket.socketpair()
        self.addCleanup(balancer.close)
        fd = accepted.detach()
        self.addCleanup(os.close, fd)
        return balancer, fd

    def test_aHeaderThatIsThereGoesOutAtOnceAndStaysUnread(self) -> None:
        balancer, fd = self.connection()
        header = b"PROXY TCP4 198.51.100.7 10.0.0.1 40123 443\r\n"
        balancer.sendall(header + b"GET /")
        self.peeker.accepted([(fd, 0)], [("10.0.0.2", 1)])
        self.assertEqual(self.dispatched, [([(fd, 0)], [("198.51.100.7", 40123)])])
        self.assertEqual(os.read(fd, 100), header + b"GET /")
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_withoutAClientTheBalancersAddressIsKept(self) -> None:
        balancer, fd = self.connection()
        balancer.sendall(b"PROXY UNKNOWN\r\n")
        self.peeker.accepted([(fd, 0)], [("10.0.0.2", 1)])
        self.assertEqual(self.dispatched, [([(fd, 0)], [("10.0.0.2", 1)])])

    def test_aConnectionWaitsForItsHeader(self) -> None:
        balancer, fd = self.connection()
        self.peeker.accepted([(fd, 0)], [("10.0.0.2", 1)])
        self.assertEqual(self.dispatched, [])
        self.assertEqual(self.peeker.waiting, 1)
        [waiting] = self.reactor.getReaders()
        self.assertEqual(waiting.fileno(), fd)
        balancer.sendall(v2TCP4("203.0.113.9", 5000))
        waiting.doRead()
        self.assertEqual(self.dispatched, [([(fd, 0)], [("203.0.113.9", 5000)])])
        self.assertEqual((self.reactor.getReaders(), self.reactor.getDelayedCalls()), ([], []))
        self.assertEqual(self.peeker.waiting, 0)

    def test_theOthersOfABatchDoNotWait(self) -> None:
        slow, slowFD = self.connection()
        quick, quickFD = self.connection()
        quick.sendall(b"PROXY TCP4 198.51.100.7 10.0.0.1 40123 443\r\n")
        self.peeker.accepted([(slowFD, 0), (quickFD, 0)], [("10.0.0.2", 1), ("10.0.0.2", 2)])
        self.assertEqual(self.dispatched, [([(quickFD, 0)], [("198.51.100.7", 40123)])])
        self.assertEqual(self.peeker.waiting, 1)

    def test_aHeaderInPartIsLookedAtAgainWithoutSpinning(self) -> None:
        """
        Unread bytes keep the socket readable: the peeker stops watching it
        and looks again every L{RETRY_PARTIAL} seconds.
        """
        balancer, fd = self.connection()
        self.peeker.accepted([(fd, 0)], [("10.0.0.2", 1)])
        balancer.sendall(b"PROXY TCP4 198.51.")
        [waiting] = self.reactor.getReaders()
        waiting.doRead()
        self.assertEqual(self.reactor.getReaders(), [])
        self.reactor.advance(RETRY_PARTIAL)
        self.assertEqual(self.dispatched, [])
        balancer.sendall(b"100.7 10.0.0.1 40123 443\r\n")
        self.reactor.advance(RETRY_PARTIAL)
        self.assertEqual(self.dispatched, [([(fd, 0)], [("198.51.100.7", 40123)])])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_aConnectionThatSendsNothingGoesOutAfterTheTimeout(self) -> None:
        balancer, fd = self.connection()
        self.peeker.accepted([(fd, 0)], [("10.0.0.2", 1)])
        self.reactor.advance(PEEK_TIMEOUT - 0.1)
        self.assertEqual(self.dispatched, [])
        self.reactor.advance(0.1)
        self.assertEqual(self.dispatched, [([(fd, 0)], [("10.0.0.2", 1)])])
        self.assertEqual(self.reactor.getReaders(), [])

    def test_aClosedConnectionGoesOutForTheWorkerToClose(self) -> None:
        balancer, fd = self.connection()
        self.peeker.accepted([(fd, 0)], [("10.0.0.2", 1)])
        balancer.close()
        self.reactor.getReaders()[0].doRead()
        self.assertEqual(self.dispatched, [([(fd, 0)], [("10.0.0.2", 1)])])

    def test_flushLeavesNothingBehind(self) -> None:
        first, firstFD = self.connection()
        second, secondFD = self.connection()
        self.peeker.accepted([(firstFD, 0), (secondFD, 1)], [("10.0.0.2", 1), ("10.0.0.2", 2)])
        self.peeker.flush()
        self.assertEqual(sorted(c for batch, _ in self.dispatched for c in batch),
                         sorted([(firstFD, 0), (secondFD, 1)]))
        self.assertEqual((self.reactor.getReaders(), self.reactor.getDelayedCalls()), ([], []))
