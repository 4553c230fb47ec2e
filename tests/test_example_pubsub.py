"""
Tests of the pub/sub example (examples/pubsub.py), written the way a user
writes them: with L{twisted_cluster.testing} and trial's in-memory
transports only.  A client is a protocol the worker's factory builds, over
a L{StringTransport}; L{FakeCluster.flush} delivers the AMP traffic between
the workers and the master; its clock drives the rate limit and the drain.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import SynchronousTestCase, TestCase

from examples.pubsub import app
from twisted_cluster.testing import FakeCluster, FakeWorker, startCluster


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
        self.cluster.kill(2)
        self.one.send("STATS")
        self.assertEqual(
            self.one.lines(), ["STATS clients=1 draining=0 exits=1 workers=1"]
        )
        self.assertEqual(self.cluster.masterResponders.exits, {"rollout": 1})

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


class Subscriber(LineReceiver):
    delimiter = b"\n"

    def __init__(self) -> None:
        self.lines: list[str] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line.decode())


class PubSubClusterTests(TestCase):
    timeout = 60

    async def subscriber(self, port: int) -> Subscriber:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        client = await connectProtocol(endpoint, Subscriber())
        self.addCleanup(client.transport.loseConnection)
        return client

    async def test_messageCrossesWorkersInARealCluster(self) -> None:
        cluster = await startCluster(self, app, workers=2)
        one = await self.subscriber(cluster.port)
        two = await self.subscriber(cluster.port)
        for client in (one, two):
            client.sendLine(b"JOIN lobby")
        await cluster.waitUntil(lambda: one.lines and two.lines, 10, "joins")
        two.sendLine(b"PUB lobby hello")
        await cluster.waitUntil(lambda: "MSG lobby hello" in one.lines, 10, "the message")
        one.sendLine(b"STATS")
        await cluster.waitUntil(lambda: one.lines[-1].startswith("STATS"), 10, "STATS")
        self.assertEqual(one.lines[-1], "STATS clients=2 draining=0 exits=0 workers=2")
