"""
Tests of the pub/sub example (examples/pubsub.py), written the way a user
writes them: with L{twisted_cluster.testing} and trial's in-memory
transports only.  A client is a protocol the worker's factory builds, over
a L{StringTransport}; L{FakeCluster.flush} delivers the AMP traffic between
the workers and the master; its clock drives the rate limit and the drain.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from examples.pubsub import app
from twisted_cluster.testing import FakeCluster, FakeWorker


class Connected:
    """
    One client connected to a worker of a L{FakeCluster}.
    """

    def __init__(self, cluster: FakeCluster, worker: FakeWorker) -> None:
        self.cluster = cluster
        self.protocol = worker.app.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, line: str) -> None:
        self.protocol.dataReceived(line.encode() + b"\n")
        self.cluster.flush()

    def lines(self) -> list[str]:
        """
        The lines received since the last call.
        """
        received = self.transport.value().decode().split("\n")
        self.transport.clear()
        return [line for line in received if line]


class PubSubTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cluster = FakeCluster(app, workers=2)
        self.one = Connected(self.cluster, self.cluster.workers[1])
        self.two = Connected(self.cluster, self.cluster.workers[2])

    def test_messageReachesTheRoomOnEveryWorker(self) -> None:
        self.one.send("JOIN lobby")
        self.two.send("JOIN lobby")
        self.one.lines(), self.two.lines()
        self.two.send("PUB lobby hello")
        self.assertEqual(self.one.lines(), ["MSG lobby hello"])
        self.assertEqual(sorted(self.two.lines()), ["MSG lobby hello", "OK"])

    def test_roomRateLimitIsKeptForTheWholeClusterOnTheMastersClock(self) -> None:
        for _ in range(50):
            self.one.send("PUB busy x")
            self.two.send("PUB busy x")
        self.assertEqual(self.one.lines(), ["OK"] * 50)
        self.two.lines()
        self.one.send("PUB busy x")
        self.assertEqual(self.one.lines(), ["ERR rate-limited"])
        self.cluster.clock.advance(0.05)
        self.one.send("PUB busy x")
        self.assertEqual(self.one.lines(), ["OK"])

    def test_statsCountsClientsOfDrainingWorkersAndExits(self) -> None:
        self.cluster.drain(2)
        self.one.lines()
        self.one.send("STATS")
        self.assertEqual(
            self.one.lines(), ["STATS clients=2 draining=1 exits=0 workers=1"]
        )

    def test_drainTellsClientsToReconnectThenClosesAndFinishes(self) -> None:
        self.two.send("JOIN lobby")
        self.two.lines()
        drained = self.cluster.drain(2)
        self.assertEqual(self.two.lines(), ["RECONNECT"])
        self.one.send("PUB lobby still-here")
        self.assertEqual(self.two.lines(), ["MSG lobby still-here"])
        self.assertNoResult(drained)
        self.cluster.clock.advance(1)
        self.successResultOf(drained)
        self.assertTrue(self.two.transport.disconnecting)

    def test_drainLeavesTimeBeforeAnEarlyDeadline(self) -> None:
        drained = self.cluster.drain(2, within=0.7)
        self.cluster.clock.advance(0.2)
        self.successResultOf(drained)
