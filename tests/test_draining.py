"""
Tests of what a draining worker closes, through a real C{Site} (whose
protocol is a proxy around the HTTP channel): idle keep-alive connections
at once, a connection adopted a moment ago only after it had its chance to
send its request.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from twisted_cluster._worker.tracking import ConnectionTracker, isIdle

ADDRESS = IPv4Address("TCP", "127.0.0.1", 12345)
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def site(page: Resource) -> Site:
    """
    A site whose connection time-outs go to a L{Clock}, not the reactor.
    """
    return Site(page, reactor=Clock())


class Page(Resource):
    isLeaf = True

    def __init__(self, wait: bool = False) -> None:
        super().__init__()
        self.wait = wait
        self.requests: list = []

    def render_GET(self, request):
        self.requests.append(request)
        return NOT_DONE_YET if self.wait else b"hello"


class DrainTests(SynchronousTestCase):
    def connect(self, tracker: ConnectionTracker):
        protocol = tracker.buildProtocol(ADDRESS)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_keepAliveConnectionIsClosedOnceTheGraceIsOver(self) -> None:
        tracker = ConnectionTracker(site(Page()))
        protocol, transport = self.connect(tracker)
        protocol.dataReceived(REQUEST)
        self.assertIn(b"hello", transport.value())
        self.assertTrue(isIdle(protocol))
        self.assertEqual(tracker.closeIdle(closeIdleNow=False), 1)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(tracker.closeIdle(closeIdleNow=True), 0)
        self.assertTrue(transport.disconnecting)

    def test_keepAliveRequestDuringTheGraceIsAnsweredWithConnectionClose(self) -> None:
        """
        A keep-alive client's next request is served, told C{Connection:
        close}, and the connection closes after it: the client reconnects
        (to another worker) instead of losing a request.
        """
        tracker = ConnectionTracker(site(Page()))
        protocol, transport = self.connect(tracker)
        protocol.dataReceived(REQUEST)
        transport.clear()
        tracker.closeIdle(closeIdleNow=False)
        protocol.dataReceived(REQUEST)
        response = transport.value().lower()
        self.assertIn(b"hello", response)
        self.assertIn(b"connection: close", response)
        self.assertTrue(transport.disconnecting)

    def test_freshConnectionIsSparedUntilTheGraceIsOver(self) -> None:
        tracker = ConnectionTracker(site(Page()))
        protocol, transport = self.connect(tracker)
        self.assertEqual(tracker.closeIdle(closeIdleNow=False), 1)
        self.assertFalse(transport.disconnecting)
        tracker.closeIdle(closeIdleNow=True)
        self.assertTrue(transport.disconnecting)

    def test_freshConnectionWhoseRequestArrivesIsServedThenClosed(self) -> None:
        tracker = ConnectionTracker(site(Page()))
        protocol, transport = self.connect(tracker)
        tracker.closeIdle(closeIdleNow=False)
        protocol.dataReceived(REQUEST)
        self.assertIn(b"hello", transport.value())
        self.assertIn(b"connection: close", transport.value().lower())
        self.assertTrue(transport.disconnecting)

    def test_requestInFlightIsAnsweredWithConnectionClose(self) -> None:
        page = Page(wait=True)
        tracker = ConnectionTracker(site(page))
        protocol, transport = self.connect(tracker)
        protocol.dataReceived(REQUEST)
        self.assertEqual(tracker.closeIdle(closeIdleNow=True), 1)
        self.assertFalse(transport.disconnecting)
        page.requests[0].write(b"done")
        page.requests[0].finish()
        self.assertIn(b"done", transport.value())
        self.assertIn(b"connection: close", transport.value().lower())
        self.assertTrue(transport.disconnecting)
