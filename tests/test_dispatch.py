"""
Tests for L{twisted_cluster._master.dispatch}.
"""

import hashlib
from collections import Counter

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_cluster._master.dispatch import (
    POLICIES,
    IDispatchPolicy,
    LeastConnections,
    NoWorkerReady,
    RoundRobin,
    SharedListeners,
    Sticky,
    policyNamed,
)


class RoundRobinTests(SynchronousTestCase):
    def test_providesThePolicyInterface(self) -> None:
        verifyObject(IDispatchPolicy, RoundRobin())

    def test_eachWorkerInTurn(self) -> None:
        policy = RoundRobin()
        chosen = [policy.choose([1, 2, 3], None) for _ in range(7)]
        self.assertEqual(chosen, [1, 2, 3, 1, 2, 3, 1])

    def test_evenSpreadOverManyConnections(self) -> None:
        policy = RoundRobin()
        counts = Counter(policy.choose([1, 2, 3], None) for _ in range(30))
        self.assertEqual(counts, {1: 10, 2: 10, 3: 10})

    def test_workerLeavingKeepsTheRotation(self) -> None:
        policy = RoundRobin()
        self.assertEqual(policy.choose([1, 2, 3], None), 1)
        self.assertEqual(policy.choose([1, 2, 3], None), 2)
        # Worker 2 died: the next after it is 3, not 1 again.
        self.assertEqual(policy.choose([1, 3], None), 3)
        self.assertEqual(policy.choose([1, 3], None), 1)

    def test_workerJoiningIsServedInItsTurn(self) -> None:
        policy = RoundRobin()
        policy.choose([1, 2], None)
        self.assertEqual(policy.choose([1, 2, 3], None), 2)
        self.assertEqual(policy.choose([1, 2, 3], None), 3)

    def test_noWorker(self) -> None:
        self.assertRaises(NoWorkerReady, RoundRobin().choose, [], None)


class _Worker:
    """
    A stand-in for the master's worker process: a key with a C{workerId}
    that compares by identity, as L{WorkerProcess} does.
    """

    def __init__(self, workerId: int) -> None:
        self.workerId = workerId

    def __repr__(self) -> str:
        return f"<worker {self.workerId}>"


class RoundRobinWorkerKeysTests(SynchronousTestCase):
    def test_replacedWorkerRejoinsTheRotationInItsPlace(self) -> None:
        """
        With worker-process keys, a worker that left is followed by the one
        with the next worker id, and its replacement (a new key with the
        same id) takes its turn again.
        """
        one, two, three = _Worker(1), _Worker(2), _Worker(3)
        policy = RoundRobin()
        self.assertIs(policy.choose([one, two, three], None), one)
        self.assertIs(policy.choose([one, two, three], None), two)
        self.assertIs(policy.choose([one, three], None), three)
        newTwo = _Worker(2)
        self.assertEqual(
            [policy.choose([one, newTwo, three], None) for _ in range(3)],
            [one, newTwo, three],
        )

    def test_choiceDoesNotScanAnUnchangedList(self) -> None:
        """
        While the ready list stays the same, a choice compares one key
        (O(1)), whatever the number of workers.
        """
        compared = []

        class Key(_Worker):
            def __eq__(self, other: object) -> bool:
                compared.append(self)
                return self is other

            __hash__ = object.__hash__

        ready = [Key(i) for i in range(1, 65)]
        policy = RoundRobin()
        for _ in range(200):
            policy.choose(ready, None)
        self.assertLessEqual(len(compared), 200)


class LeastConnectionsTests(SynchronousTestCase):
    def test_providesThePolicyInterface(self) -> None:
        verifyObject(IDispatchPolicy, LeastConnections())

    def test_tiesGoToEachWorkerInTurn(self) -> None:
        policy = LeastConnections()
        chosen = [policy.choose([1, 2, 3], None) for _ in range(6)]
        self.assertEqual(Counter(chosen), {1: 2, 2: 2, 3: 2})

    def test_newConnectionsAvoidTheWorkerHoldingLongLivedOnes(self) -> None:
        """
        Connections that stay open count against their worker: the next
        ones go to the others until they are as loaded.
        """
        policy = LeastConnections()
        first = policy.choose([1, 2], None)
        other = 2 if first == 1 else 1
        # Short connections to the other worker open and close again.
        for _ in range(5):
            self.assertEqual(policy.choose([1, 2], None), other)
            policy.closed(other, 1)
        self.assertEqual(policy.openConnections(first), 1)
        self.assertEqual(policy.openConnections(other), 0)

    def test_burstInOneBatchSpreadsBeforeAnyClose(self) -> None:
        policy = LeastConnections()
        chosen = Counter(policy.choose([1, 2, 3, 4], None) for _ in range(40))
        self.assertEqual(chosen, {1: 10, 2: 10, 3: 10, 4: 10})

    def test_closesReportedLaterRebalance(self) -> None:
        policy = LeastConnections()
        for _ in range(4):
            policy.choose([1, 2], None)
        policy.closed(1, 2)
        self.assertEqual([policy.choose([1, 2], None) for _ in range(2)], [1, 1])

    def test_moreClosesThanKnownNeverGoBelowZero(self) -> None:
        policy = LeastConnections()
        policy.choose([1], None)
        policy.closed(1, 5)
        policy.closed(7, 1)
        self.assertEqual(policy.openConnections(1), 0)
        self.assertEqual(policy.openConnections(7), 0)

    def test_forgottenWorkerStartsAtZero(self) -> None:
        policy = LeastConnections()
        for _ in range(3):
            policy.choose([1], None)
        policy.forget(1)
        self.assertEqual(policy.openConnections(1), 0)

    def test_noWorker(self) -> None:
        self.assertRaises(NoWorkerReady, LeastConnections().choose, [], None)


def _bytewiseHash(value: object) -> int:
    """
    A hash that is the same in every process (unlike C{hash} of a str).
    """
    return int.from_bytes(hashlib.sha256(repr(value).encode()).digest()[:8], "big")


class StickyTests(SynchronousTestCase):
    def test_providesThePolicyInterface(self) -> None:
        verifyObject(IDispatchPolicy, Sticky())

    def test_aClientAddressStaysOnOneWorker(self) -> None:
        """
        Every connection from one IP goes to one worker, whatever its port.
        """
        policy = Sticky(hash=_bytewiseHash)
        chosen = {policy.choose([1, 2, 3], ("10.0.0.7", port)) for port in range(1000, 1050)}
        self.assertEqual(len(chosen), 1)

    def test_clientsAreSpreadOverTheWorkers(self) -> None:
        policy = Sticky(hash=_bytewiseHash)
        chosen = Counter(
            policy.choose([1, 2, 3], (f"10.0.{i // 256}.{i % 256}", 4000))
            for i in range(3000)
        )
        self.assertEqual(set(chosen), {1, 2, 3})
        self.assertGreater(min(chosen.values()), 800)

    def test_aJoiningWorkerTakesNoKnownClient(self) -> None:
        policy = Sticky(hash=_bytewiseHash)
        clients = [(f"10.1.0.{i}", 5000) for i in range(200)]
        before = [policy.choose([1, 2], peer) for peer in clients]
        after = [policy.choose([1, 2, 3], peer) for peer in clients]
        self.assertEqual(before, after)
        newcomers = Counter(
            policy.choose([1, 2, 3], (f"10.2.0.{i}", 5000)) for i in range(200)
        )
        self.assertGreater(newcomers[3], 0)

    def test_clientsOfAWorkerThatLeftMoveAndStay(self) -> None:
        policy = Sticky(hash=_bytewiseHash)
        clients = [(f"10.3.0.{i}", 5000) for i in range(100)]
        before = {peer: policy.choose([1, 2, 3], peer) for peer in clients}
        policy.forget(2)
        after = {peer: policy.choose([1, 3], peer) for peer in clients}
        for peer in clients:
            if before[peer] != 2:
                self.assertEqual(after[peer], before[peer])
            else:
                self.assertIn(after[peer], (1, 3))
        self.assertEqual(after, {peer: policy.choose([1, 2, 3], peer) for peer in clients})

    def test_rememberedClientsAreBounded(self) -> None:
        policy = Sticky(remember=10, hash=_bytewiseHash)
        for i in range(100):
            policy.choose([1, 2], (f"10.4.0.{i}", 1))
        self.assertEqual(policy.remembered(), 10)

    def test_unixSocketPeersAndUnknownPeers(self) -> None:
        """
        A UNIX socket's peer (an empty name) is one client; an unknown peer
        (a connection handed out again) goes round-robin.
        """
        policy = Sticky(hash=_bytewiseHash)
        self.assertEqual(len({policy.choose([1, 2], "") for _ in range(10)}), 1)
        self.assertEqual([policy.choose([1, 2], None) for _ in range(4)], [1, 2, 1, 2])

    def test_noWorker(self) -> None:
        self.assertRaises(NoWorkerReady, Sticky().choose, [], ("10.0.0.1", 1))

    def test_onlyStickyNeedsTheClientBehindAProxy(self) -> None:
        """
        The master reads PROXY headers (L{twisted_cluster._master.proxypeek}) only
        for a policy that keys on the client.
        """
        self.assertTrue(Sticky.keysOnClients)
        for policy in (RoundRobin, LeastConnections, SharedListeners):
            self.assertFalse(policy.keysOnClients, policy)


class SharedListenersTests(SynchronousTestCase):
    def test_workersAcceptThemselves(self) -> None:
        policy = SharedListeners()
        verifyObject(IDispatchPolicy, policy)
        self.assertTrue(policy.sharesListeners)
        self.assertFalse(RoundRobin.sharesListeners)

    def test_whatTheMasterStillHandsOutGoesRoundRobin(self) -> None:
        policy = SharedListeners()
        self.assertEqual([policy.choose([1, 2], None) for _ in range(4)], [1, 2, 1, 2])


class PolicyNamedTests(SynchronousTestCase):
    def test_everyNameBuildsItsPolicy(self) -> None:
        self.assertEqual(
            {name: type(policyNamed(name)) for name in POLICIES},
            {
                "round-robin": RoundRobin,
                "least-connections": LeastConnections,
                "shared": SharedListeners,
                "sticky": Sticky,
            },
        )

    def test_unknownNameListsTheKnownOnes(self) -> None:
        with self.assertRaises(ValueError) as raised:
            policyNamed("random")
        self.assertIn("round-robin, least-connections, shared, sticky", str(raised.exception))


class _Slot:
    """
    A worker as the sticky policy sees it: an object with a worker id.
    """

    def __init__(self, workerId: int) -> None:
        self.workerId = workerId


class StickyRendezvousHashTests(SynchronousTestCase):
    """
    The default rendezvous hash spreads clients over the workers and depends
    on the workers' ids, not on where their objects live in memory.
    """

    def assignment(self) -> list[int]:
        workers = [_Slot(1), _Slot(2)]
        policy = Sticky()
        return [
            policy.choose(workers, (f"127.0.0.{i}", 5000)).workerId  # type: ignore[attr-defined]
            for i in range(2, 66)
        ]

    def test_clientsSpreadOverTheWorkers(self) -> None:
        counts = Counter(self.assignment())
        self.assertEqual(set(counts), {1, 2})
        self.assertGreater(min(counts.values()), 64 * 0.3)

    def test_theSameIdsGiveTheSameChoices(self) -> None:
        """
        New worker objects with the same ids (another run, another address in
        memory) get the same clients.
        """
        self.assertEqual(self.assignment(), self.assignment())
