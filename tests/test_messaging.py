"""
Messaging through a deploy, and errors that say what happened, driven
through L{twisted_cluster.testing.FakeCluster}: a draining worker still
receives C{broadcast} and C{callWorker}; fire-and-forget commands; typed
time-outs; calls that cannot work refused at once; lists of large values
refused with advice; the contexts' clock.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import TimeoutError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import FakeProcess, FakeSupervisor
from tests.test_api import APP, Echo, Stall
from twisted_cluster import (
    BigUnicode,
    BroadcastAnswers,
    CallTimedOut,
    ClusterApp,
    ClusterConfig,
    ClusterService,
    NoSuchWorker,
    ValueTooLong,
    WorkerGone,
)
from twisted_cluster._supervision.process import DRAINING, READY
from twisted_cluster.testing import FakeCluster


class Note(amp.Command):
    """
    Fire and forget, either way: nobody waits for an answer.
    """

    arguments = [(b"text", amp.Unicode())]
    response: list[tuple[bytes, amp.Argument]] = []
    requiresAnswer = False


class Notes(amp.CommandLocator):
    def __init__(self, context: Any) -> None:
        self.notes: list[str] = []

    @Note.responder
    def note(self, text: str) -> dict[str, Any]:
        self.notes.append(text)
        return {}


NOTES = ClusterApp(
    app=Factory.forProtocol(Protocol), workerResponders=Notes, masterResponders=Notes
)


class WithTimeout(amp.Command):
    arguments = [(b"timeout", amp.Integer())]
    response: list[tuple[bytes, amp.Argument]] = []


class Words(amp.Command):
    arguments = [(b"words", amp.ListOf(BigUnicode()))]
    response: list[tuple[bytes, amp.Argument]] = []


class Rows(amp.Command):
    arguments = [(b"rows", amp.AmpList([(b"name", amp.Unicode())]))]
    response: list[tuple[bytes, amp.Argument]] = []


class DrainingWorkerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cluster = FakeCluster(APP, workers=3)

    def test_drainingWorkerStillReceivesBroadcastsAnsweringApart(self) -> None:
        self.cluster.drain(2)
        answers = self.cluster.result(self.cluster.broadcast(Echo, text="hi"))
        self.assertIsInstance(answers, BroadcastAnswers)
        self.assertEqual(sorted(answers), [1, 3])
        self.assertEqual(answers.draining, {2: {"text": "hi", "worker": 2}})
        self.assertEqual(len(answers.everyAnswer()), 3)

    def test_drainingWorkerStillAnswersCallWorkerAndRelays(self) -> None:
        self.cluster.drain(2)
        self.assertEqual(
            self.cluster.result(self.cluster.callWorker(2, Echo, text="a"))["worker"], 2
        )
        relayed = self.cluster.workers[1].context.callWorker(2, Echo, text="b")
        self.assertEqual(self.cluster.result(relayed)["worker"], 2)

    def test_workerIdsCountsDrainingWorkersWhenAsked(self) -> None:
        self.cluster.drain(3)
        self.assertEqual(self.cluster.workerIds(), [1, 2])
        self.assertEqual(self.cluster.workerIds(draining=True), [1, 2, 3])

    def test_drainedWorkerThatExitedReceivesNothing(self) -> None:
        self.cluster.drain(3)
        self.cluster.kill(3)
        self.assertEqual(self.cluster.workerIds(draining=True), [1, 2])
        self.assertRaises(
            NoSuchWorker, self.cluster.result, self.cluster.callWorker(3, Echo, text="x")
        )


class FireAndForgetTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cluster = FakeCluster(NOTES, workers=2)

    def test_broadcastOfACommandWithoutAnswerReachesEveryWorker(self) -> None:
        d = self.cluster.broadcast(Note, text="hello")
        self.assertEqual(self.cluster.result(d), {1: None, 2: None})
        for worker in self.cluster.workers.values():
            self.assertEqual(worker.responders.notes, ["hello"])

    def test_callMasterWithoutAnswerFiresAtOnceAndArrives(self) -> None:
        d = self.cluster.workers[1].context.callMaster(Note, text="up")
        self.assertIsNone(self.successResultOf(d))
        self.cluster.flush()
        self.assertEqual(self.cluster.masterResponders.notes, ["up"])


class ErrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cluster = FakeCluster(APP, workers=2)

    def test_timeOutNamesTheCommandAndTheWorker(self) -> None:
        d = self.cluster.callWorker(2, Stall, timeout=2)
        self.cluster.flush()
        self.cluster.clock.advance(2)
        failure = self.failureResultOf(d, CallTimedOut)
        self.assertIsInstance(failure.value, TimeoutError)
        self.assertEqual(str(failure.value), "Stall to worker 2 got no answer within 2s")

    def test_relayedTimeOutNamesTheCommandAndTheWorker(self) -> None:
        d = self.cluster.workers[1].context.callWorker(2, Stall, timeout=3)
        self.cluster.flush()
        self.cluster.clock.advance(3)
        self.cluster.flush()
        failure = self.failureResultOf(d, CallTimedOut)
        self.assertIn("Stall to worker 2", str(failure.value))

    def test_somethingThatIsNoCommandIsRefusedAtOnce(self) -> None:
        context = self.cluster.workers[1].context
        for call in (
            lambda: self.cluster.broadcast("Echo"),
            lambda: self.cluster.callWorker(1, Echo(text="x")),
            lambda: context.callMaster(dict),
            lambda: context.callWorker(2, None),
        ):
            self.assertRaises(TypeError, call)

    def test_argumentNamedTimeoutIsRefusedWithWhatToDo(self) -> None:
        error = self.assertRaises(
            TypeError, self.cluster.broadcast, WithTimeout, timeout=5
        )
        self.assertIn("rename the argument", str(error))

    def test_listOfBigValuesIsRefusedBeforeSending(self) -> None:
        d = self.cluster.workers[1].context.callMaster(Words, words=["a"])
        error = self.failureResultOf(d, TypeError).value
        self.assertIn("BigUnicode() argument", str(error))

    def test_listOverOneValueIsRefusedWithAdviceForAList(self) -> None:
        rows = [{"name": "x" * 1000} for _ in range(70)]
        d = self.cluster.workers[1].context.callMaster(Rows, rows=rows)
        error = self.failureResultOf(d, ValueTooLong).value
        self.assertIn("it is a list", str(error))

    def test_callFromAKilledWorkerFailsWithWorkerGone(self) -> None:
        context = self.cluster.workers[1].context
        self.cluster.kill(1)
        d = context.callMaster(Echo, text="x")
        self.cluster.flush()
        self.assertEqual(self.failureResultOf(d, WorkerGone).value.workerId, 1)


class ClockTests(SynchronousTestCase):
    def test_contextsShareTheFakeClustersClock(self) -> None:
        cluster = FakeCluster(APP, workers=1)
        self.assertIs(cluster.workers[1].context.clock, cluster.clock)
        self.assertIs(cluster.masterResponders.master.clock, cluster.clock)


class ServiceMembershipTests(SynchronousTestCase):
    """
    Which processes the master service counts as live for messaging.
    """

    def test_drainingWorkersThatWereReadyAreLive(self) -> None:
        service = ClusterService(MemoryReactorClock(), ClusterConfig(workers=3))
        supervisor = FakeSupervisor()
        service.supervisor = supervisor  # type: ignore[assignment]
        channel = lambda: SimpleNamespace(transport=object())  # noqa: E731
        supervisor.extra = [
            FakeProcess(1, 11, READY, readyAt=1.0, control=channel()),
            FakeProcess(1, 10, DRAINING, readyAt=0.5, control=channel()),
            FakeProcess(2, 12, DRAINING, readyAt=None, control=channel()),
            FakeProcess(3, 13, DRAINING, readyAt=0.5, control=channel()),
            FakeProcess(4, 14, DRAINING, readyAt=0.5, control=SimpleNamespace(transport=None)),
        ]
        self.assertEqual(service.workerIds(), [1])
        self.assertEqual(service.workerIds(draining=True), [1, 3])
