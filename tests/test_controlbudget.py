"""
Unit tests of L{twisted_cluster._control.budget}: the request budget and the
control site's connection cap, on a L{Clock} and string transports.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from twisted_cluster._control.budget import BudgetedFactory, RequestBudget
from twisted_cluster._control.site import CONTROL_IDLE_TIMEOUT, controlSite

PEER = IPv4Address("TCP", "127.0.0.1", 5000)


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)


class RequestBudgetTests(SynchronousTestCase):
    def test_burstThenRate(self) -> None:
        """
        A full bucket gives C{burst} units at once; then one unit per
        C{1/rate} seconds, and C{take} says how long to wait.
        """
        clock = Clock()
        budget = RequestBudget(clock, rate=10, burst=3)
        self.assertEqual([budget.take() for _ in range(3)], [0, 0, 0])
        self.assertAlmostEqual(budget.take(), 0.1)
        clock.advance(0.1)
        self.assertEqual(budget.take(), 0)
        self.assertGreater(budget.take(), 0)
        clock.advance(100)
        self.assertEqual([budget.take() for _ in range(3)], [0, 0, 0])
        self.assertGreater(budget.take(), 0)


class BudgetedFactoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = BudgetedFactory(
            Factory.forProtocol(Recorder), self.clock,
            RequestBudget(self.clock, rate=10, burst=2), maxConnections=2,
        )

    def connect(self) -> tuple[object, StringTransport]:
        protocol = self.factory.buildProtocol(PEER)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_readsPastTheBudgetWaitWithTheTransportPaused(self) -> None:
        """
        Reads within the budget go through; the next one is held, with its
        transport paused, until the budget has a unit again, then delivered
        in order.
        """
        protocol, transport = self.connect()
        recorder = protocol.wrappedProtocol  # type: ignore[attr-defined]
        for data in (b"a", b"b", b"c", b"d"):
            protocol.dataReceived(data)  # type: ignore[attr-defined]
        self.assertEqual(recorder.received, [b"a", b"b"])
        self.assertEqual(transport.producerState, "paused")
        self.clock.advance(0.1)
        self.assertEqual(recorder.received, [b"a", b"b", b"cd"])
        self.assertEqual(transport.producerState, "producing")

    def test_connectionsPastTheCapAreRefused(self) -> None:
        """
        At most C{maxConnections} are open at once; one more is refused
        until one closes.
        """
        first, _ = self.connect()
        self.connect()
        self.assertIsNone(self.factory.buildProtocol(PEER))
        first.connectionLost(None)  # type: ignore[attr-defined]
        self.assertIsNotNone(self.factory.buildProtocol(PEER))

    def test_closedWhileHeldCancelsTheDelivery(self) -> None:
        protocol, _ = self.connect()
        for data in (b"a", b"b", b"c"):
            protocol.dataReceived(data)  # type: ignore[attr-defined]
        protocol.connectionLost(None)  # type: ignore[attr-defined]
        self.assertEqual(self.clock.getDelayedCalls(), [])


class IdleConnectionTests(SynchronousTestCase):
    """
    The control site closes a connection that stays silent: 64 idle
    holders would otherwise lock operators and probes out for good.
    """

    def connect(self) -> tuple[Clock, StringTransport]:
        clock = Clock()
        site = controlSite(Resource(), clock)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        transport = StringTransport()
        channel.makeConnection(transport)
        return clock, transport

    def test_aSilentConnectionIsClosed(self) -> None:
        clock, transport = self.connect()
        clock.advance(CONTROL_IDLE_TIMEOUT - 0.1)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
