"""
Tests for L{twisted_cluster._worker.tracking}: counting connections and closing them
gracefully on drain.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from twisted_cluster._worker.tracking import ConnectionTracker

ADDRESS = IPv4Address("TCP", "127.0.0.1", 12345)


class Pending(Resource):
    """
    Answers only when the test says so.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests = []

    def render_GET(self, request):
        self.requests.append(request)
        return NOT_DONE_YET


class TrackerTests(SynchronousTestCase):
    def connect(self, tracker: ConnectionTracker) -> tuple[Protocol, StringTransport]:
        protocol = tracker.buildProtocol(ADDRESS)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_countsOpenAndServedAndReportsCloses(self) -> None:
        closed = []
        tracker = ConnectionTracker(Factory.forProtocol(Protocol), lambda: closed.append(1))
        first, _ = self.connect(tracker)
        self.connect(tracker)
        self.assertEqual((tracker.open, tracker.served), (2, 2))
        first.connectionLost(None)
        self.assertEqual((tracker.open, tracker.served), (1, 2))
        self.assertEqual(closed, [1])

    def test_idleKeepAliveConnectionIsClosedOnDrain(self) -> None:
        tracker = ConnectionTracker(Site(Pending(), reactor=Clock()))
        _, transport = self.connect(tracker)
        self.assertEqual(tracker.closeIdle(), 0)
        self.assertTrue(transport.disconnecting)

    def test_requestInFlightFinishesThenTheConnectionCloses(self) -> None:
        page = Pending()
        tracker = ConnectionTracker(Site(page, reactor=Clock()))
        channel, transport = self.connect(tracker)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(tracker.closeIdle(), 1)
        self.assertFalse(transport.disconnecting)
        page.requests[0].write(b"done")
        page.requests[0].finish()
        self.assertIn(b"done", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_otherProtocolsAreLeftToFinish(self) -> None:
        tracker = ConnectionTracker(Factory.forProtocol(Protocol))
        _, transport = self.connect(tracker)
        self.assertEqual(tracker.closeIdle(), 1)
        self.assertFalse(transport.disconnecting)
