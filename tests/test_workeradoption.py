"""
Tests for the worker's side of the hand-off (L{twisted_cluster._worker.runtime}):
connections it received but could not adopt are closed, counted, and
logged once per episode.  The worker runs on a L{MemoryReactorClock}; the
connections are real TCP connections on 127.0.0.1.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import tcp
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransport,
)
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.apps import exhausted
from twisted_cluster._contract.handoff import socketpair
from twisted_cluster._contract.workerconfig import WorkerConfig
from twisted_cluster._supervision.handoffsender import HandoffSender
from twisted_cluster._worker.runtime import Worker


class _Reactor(MemoryReactorClock):
    """
    A memory reactor that connects the protocol of an adopted stream (the
    worker's control channel) to a L{StringTransport}.
    """

    def adoptStreamConnection(self, fileDescriptor: int, addressFamily: int, factory: Any) -> Any:
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        return protocol


class UnadoptableConnectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = _Reactor()
        controlOurs, controlTheirs = socket.socketpair()
        self.addCleanup(controlOurs.close)
        masterEnd, workerEnd = socketpair()
        workerEnd.setblocking(False)
        self.acks: list[tuple[int, int]] = []
        self.sender = HandoffSender(
            self.reactor, masterEnd, lambda t, c, r: self.acks.append((t, c)),
            lambda lost: None,
        )
        self.addCleanup(self.sender.close)
        config = WorkerConfig(
            workerId=7, app="tests.apps.exhausted.factory",
            families=(socket.AF_INET,), listeners=("tcp:0",),
        )
        self.worker = Worker(
            self.reactor, config, lambda: None,
            controlFD=controlTheirs.detach(), handoffFD=workerEnd.detach(),
        )
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.worker.start()
        self.addCleanup(self.closeAdopted)
        self.listener = socket.socket()
        self.addCleanup(self.listener.close)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.patch(exhausted, "exhausted", True)

    def closeAdopted(self) -> None:
        for reader in list(self.reactor.readers):
            if isinstance(reader, tcp.Server):
                reader.socket.close()

    def handOver(self, count: int) -> list[socket.socket]:
        """
        Hand C{count} accepted TCP connections to the worker; the clients.
        """
        clients, accepted = [], []
        for _ in range(count):
            client = socket.create_connection(self.listener.getsockname())
            self.addCleanup(client.close)
            client.settimeout(5)
            clients.append(client)
            accepted.append((self.listener.accept()[0].detach(), 0))
        self.sender.send(accepted)
        self.sender.doRead()  # nothing yet: the worker has not read
        [receiver] = [r for r in self.reactor.readers if type(r).__name__ == "HandoffReceiver"]
        receiver.doRead()
        self.reactor.advance(1)
        self.sender.doRead()
        return clients

    def exhaustionEvents(self) -> list[tuple[str, int]]:
        return [
            ("again" if "count" in e else "exhausted", e["worker_id"])
            for e in self.events
            if "worker_id" in e and ("error" in e or "count" in e)
        ]

    def test_unadoptableConnectionsAreClosedCountedAndLoggedOnce(self) -> None:
        """
        Three connections the app cannot take for lack of descriptors: each
        client sees its connection closed (nothing leaks), the master hears
        of three closes, and the worker logs one line; one more when it
        adopts again.
        """
        clients = self.handOver(3)
        self.assertEqual([c.recv(10) for c in clients], [b""] * 3)
        self.assertEqual(sum(t for t, _ in self.acks), 3)
        self.assertEqual(sum(c for _, c in self.acks), 3)
        self.assertEqual(self.exhaustionEvents(), [("exhausted", 7)])
        self.patch(exhausted, "exhausted", False)
        self.handOver(1)
        self.assertEqual(self.exhaustionEvents(), [("exhausted", 7), ("again", 7)])
