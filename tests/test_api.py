"""
The developer API for application commands, driven through
L{twisted_cluster.testing.FakeCluster}: real AMP boxes over in-memory
connections, the cluster's own responders, relay and error mapping, a
L{Clock} for every timeout.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.task import Clock
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransport,
)
from twisted.logger import LogLevel, globalLogPublisher
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_cluster import (
    AppLoadError,
    BigBytes,
    BigUnicode,
    ClusterApp,
    ClusterConfig,
    ClusterService,
    NoSuchWorker,
    ValueTooLong,
    WorkerGone,
)
from twisted_cluster._contract import commands
from twisted_cluster._contract.amp import ControlAMP
from twisted_cluster.apploading import asFactory, buildWorkerApp, checkApp
from twisted_cluster.calling import callCommand, packBox
from twisted_cluster.contexts import IMasterContext, WorkerContext
from twisted_cluster.testing import FakeCluster

# An application with commands in every direction.


class Overdrawn(Exception):
    pass


class Deposit(amp.Command):
    """Worker -> master: add to the shared balance."""

    arguments = [(b"amount", amp.Integer())]
    response = [(b"balance", amp.Integer())]
    errors = {Overdrawn: b"OVERDRAWN"}


class Echo(amp.Command):
    """Master or worker -> worker: answers with who answered."""

    arguments = [(b"text", amp.Unicode()), (b"command", amp.Unicode(optional=True))]
    response = [(b"text", amp.Unicode()), (b"worker", amp.Integer())]
    errors = {Overdrawn: b"OVERDRAWN"}


class Blob(amp.Command):
    """Any direction: a large value there and back."""

    arguments = [(b"data", BigBytes()), (b"text", BigUnicode(optional=True))]
    response = [(b"size", amp.Integer()), (b"data", BigBytes())]


class Small(amp.Command):
    """A plain AMP value, limited to 65,535 bytes."""

    arguments = [(b"data", amp.String())]
    response = [(b"data", amp.String())]


class Stall(amp.Command):
    """Worker -> worker: never answered by the worker told to stall."""

    arguments: list = []
    response: list = []


class Crash(amp.Command):
    """A responder with a bug, or a fatal error."""

    arguments = [(b"fatal", amp.Boolean())]
    response: list = []
    fatalErrors = {Overdrawn: b"OVERDRAWN"}


class NobodyAnswers(amp.Command):
    arguments: list = []
    response: list = []


class Bank(amp.CommandLocator):
    def __init__(self, master: IMasterContext) -> None:
        self.master = master
        self.balance = 0

    @Deposit.responder
    def deposit(self, amount: int) -> dict[str, Any]:
        if self.balance + amount < 0:
            raise Overdrawn(f"balance {self.balance}, cannot take {-amount}")
        self.balance += amount
        return {"balance": self.balance}

    @Blob.responder
    def blob(self, data: bytes, text: str | None) -> dict[str, Any]:
        return {"size": len(data), "data": data[::-1]}

    @Small.responder
    def small(self, data: bytes) -> dict[str, Any]:
        return {"data": data * 2}

    @Crash.responder
    def crash(self, fatal: bool) -> dict[str, Any]:
        if fatal:
            raise Overdrawn("fatal")
        return 1 // 0


class Teller(amp.CommandLocator):
    def __init__(self, context: WorkerContext) -> None:
        self.context = context
        self.stalled: list[Deferred[Any]] = []
        self.slow = False

    @Echo.responder
    def echo(self, text: str, command: str | None) -> Any:
        if self.slow:
            return self.stall()
        if text == "overdrawn":
            raise Overdrawn("no")
        return {"text": text, "worker": self.context.workerId}

    @Blob.responder
    def blob(self, data: bytes, text: str | None) -> dict[str, Any]:
        return {"size": len(data) + len(text or ""), "data": data}

    @Small.responder
    def small(self, data: bytes) -> dict[str, Any]:
        return {"data": data * 2}

    @Stall.responder
    def stall(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.stalled.append(d)
        return d


class Page(Resource):
    def __init__(self, context: WorkerContext) -> None:
        super().__init__()
        self.context = context


APP = ClusterApp(app=Page, workerResponders=Teller, masterResponders=Bank)


class CallDirectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cluster = FakeCluster(APP, workers=3)

    def worker(self, workerId: int) -> WorkerContext:
        return self.cluster.workers[workerId].context

    def test_workerCallsMasterAndGetsTypedAnswer(self) -> None:
        self.assertEqual(
            self.cluster.result(self.worker(1).callMaster(Deposit, amount=5)),
            {"balance": 5},
        )
        self.assertEqual(
            self.cluster.result(self.worker(2).callMaster(Deposit, amount=3)),
            {"balance": 8},
        )

    def test_masterStateIsOneForTheCluster(self) -> None:
        for workerId in (1, 2, 3):
            self.cluster.result(self.worker(workerId).callMaster(Deposit, amount=1))
        self.assertEqual(self.cluster.masterResponders.balance, 3)

    def test_masterCallsOneWorkerById(self) -> None:
        answer = self.cluster.result(self.cluster.callWorker(2, Echo, text="hi"))
        self.assertEqual(answer, {"text": "hi", "worker": 2})

    def test_workerCallsAnotherWorkerThroughTheMaster(self) -> None:
        answer = self.cluster.result(self.worker(1).callWorker(3, Echo, text="hey"))
        self.assertEqual(answer, {"text": "hey", "worker": 3})

    def test_relayCarriesArgumentsNamedLikeItsOwn(self) -> None:
        answer = self.cluster.result(
            self.worker(1).callWorker(2, Echo, text="x", command="y")
        )
        self.assertEqual(answer["worker"], 2)

    def test_broadcastGathersEveryWorkersAnswer(self) -> None:
        answers = self.cluster.result(self.cluster.broadcast(Echo, text="all"))
        self.assertEqual(
            answers, {i: {"text": "all", "worker": i} for i in (1, 2, 3)}
        )

    def test_fakeClusterLoadsTheAppByItsDottedName(self) -> None:
        cluster = FakeCluster("tests.test_api.APP", workers=1)
        answer = cluster.result(cluster.workers[1].context.callMaster(Deposit, amount=2))
        self.assertEqual(answer, {"balance": 2})

    def test_masterContextListsReadyWorkers(self) -> None:
        self.assertEqual(self.cluster.workerIds(), [1, 2, 3])
        self.cluster.kill(2)
        self.assertEqual(self.cluster.workerIds(), [1, 3])


class GoneAndSlowWorkerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.cluster = FakeCluster(APP, workers=3, clock=self.clock)

    def test_broadcastWithOneDeadAndOneSlowWorkerAnswersForAll(self) -> None:
        """
        Worker 1 answers, worker 2 dies mid-call, worker 3 never answers: the
        broadcast fires after the timeout with one entry per worker.
        """
        self.cluster.workers[2].responders.slow = True
        self.cluster.workers[3].responders.slow = True
        d = self.cluster.broadcast(Echo, timeout=5, text="x")
        self.cluster.flush()
        self.cluster.kill(2)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        answers = self.successResultOf(d)
        self.assertEqual(answers[1], {"text": "x", "worker": 1})
        self.assertTrue(answers[2].check(WorkerGone))
        self.assertTrue(answers[3].check(TimeoutError))
        self.assertEqual(sorted(answers), [1, 2, 3])

    def test_callToUnknownWorkerFailsAtOnceWithNoSuchWorker(self) -> None:
        d = self.cluster.callWorker(7, Echo, text="x")
        error = self.failureResultOf(d, NoSuchWorker).value
        self.assertEqual(error.workerId, 7)
        self.assertIn("ready: 1, 2, 3", str(error))

    def test_callInFlightToDyingWorkerFailsWithWorkerGone(self) -> None:
        d = self.cluster.callWorker(2, Stall)
        self.cluster.flush()
        self.cluster.kill(2)
        error = self.failureResultOf(d, WorkerGone).value
        self.assertEqual(error.workerId, 2)

    def test_callToDeadWorkerFailsWithNoSuchWorker(self) -> None:
        self.cluster.kill(2)
        self.failureResultOf(self.cluster.callWorker(2, Echo, text="x"), NoSuchWorker)

    def test_callTimesOut(self) -> None:
        d = self.cluster.callWorker(1, Stall, timeout=2)
        self.cluster.flush()
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.failureResultOf(d, TimeoutError)

    def test_lateAnswerAfterTimeoutIsDroppedAndChannelStaysOpen(self) -> None:
        d = self.cluster.callWorker(1, Stall, timeout=2)
        self.cluster.flush()
        self.clock.advance(2)
        self.assertTrue(d.called)
        # The answer arrives while the caller has not looked at its failure.
        self.cluster.workers[1].responders.stalled[0].callback({})
        self.cluster.flush()
        self.failureResultOf(d, TimeoutError)
        self.assertEqual(
            self.cluster.result(self.cluster.callWorker(1, Echo, text="still"))["text"],
            "still",
        )

    def test_relayToUnknownWorkerFailsWithNoSuchWorker(self) -> None:
        d = self.cluster.workers[1].context.callWorker(9, Echo, text="x")
        error = self.assertRaises(NoSuchWorker, self.cluster.result, d)
        self.assertEqual(error.workerId, 9)

    def test_relayToDyingWorkerFailsWithWorkerGone(self) -> None:
        d = self.cluster.workers[1].context.callWorker(2, Stall)
        self.cluster.flush()
        self.cluster.kill(2)
        self.assertRaises(WorkerGone, self.cluster.result, d)

    def test_relayTimesOut(self) -> None:
        d = self.cluster.workers[1].context.callWorker(2, Stall, timeout=3)
        self.cluster.flush()
        self.clock.advance(3)
        self.assertRaises(TimeoutError, self.cluster.result, d)


class ErrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cluster = FakeCluster(APP, workers=2)
        self.worker = self.cluster.workers[1].context

    def test_declaredErrorOfMasterResponderArrivesTyped(self) -> None:
        d = self.worker.callMaster(Deposit, amount=-1)
        error = self.assertRaises(Overdrawn, self.cluster.result, d)
        self.assertIn("cannot take 1", str(error))

    def test_declaredErrorOfWorkerResponderArrivesTyped(self) -> None:
        d = self.cluster.callWorker(2, Echo, text="overdrawn")
        self.assertRaises(Overdrawn, self.cluster.result, d)

    def test_relayedDeclaredErrorArrivesTyped(self) -> None:
        d = self.worker.callWorker(2, Echo, text="overdrawn")
        self.assertRaises(Overdrawn, self.cluster.result, d)

    def test_undeclaredExceptionIsUnknownRemoteErrorAndChannelStaysOpen(self) -> None:
        d = self.worker.callMaster(Crash, fatal=False)
        error = self.assertRaises(amp.UnknownRemoteError, self.cluster.result, d)
        self.assertIn("ZeroDivisionError", str(error))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(
            self.cluster.result(self.worker.callMaster(Deposit, amount=1)),
            {"balance": 1},
        )

    def test_fatalErrorDoesNotCloseTheControlChannel(self) -> None:
        d = self.worker.callMaster(Crash, fatal=True)
        self.assertRaises(Overdrawn, self.cluster.result, d)
        self.assertEqual(
            self.cluster.result(self.worker.callMaster(Deposit, amount=1)),
            {"balance": 1},
        )

    def test_unknownCommandIsUnhandledCommand(self) -> None:
        d = self.worker.callMaster(NobodyAnswers)
        self.assertRaises(amp.UnhandledCommand, self.cluster.result, d)

    def test_relayedUnknownCommandIsUnhandledCommand(self) -> None:
        d = self.worker.callWorker(2, NobodyAnswers)
        self.assertRaises(amp.UnhandledCommand, self.cluster.result, d)

    def test_relayRefusesTheClustersOwnCommands(self) -> None:
        d = self.worker.callWorker(2, commands.Drain)
        error = self.assertRaises(amp.UnhandledCommand, self.cluster.result, d)
        self.assertIn("Drain is not relayed", str(error))

    def test_missingArgumentFailsBeforeSending(self) -> None:
        self.failureResultOf(self.worker.callMaster(Deposit), amp.InvalidSignature)


class ForgedRelayTests(SynchronousTestCase):
    """
    A worker that writes its own relayed box (hostile or broken code on
    the raw control channel) cannot make the target read it as an answer or
    an error: that would close the target's channel, and the target exits.
    """

    def setUp(self) -> None:
        self.cluster = FakeCluster(APP, workers=2)
        # The calling worker's end of its control channel, as a worker's own
        # code could reach it.
        self.channel = self.cluster.workers[1].context._connection

    def relay(self, box: dict[bytes, bytes]) -> Deferred[Any]:
        return callCommand(
            self.channel,
            commands.Relay,
            {"worker": 2, "command": b"Echo", "box": packBox(amp.AmpBox(box)), "timeout": None},
        )

    def test_forgedAnswerAndErrorKeysAreRefusedAndTheTargetLives(self) -> None:
        for forged in (
            {b"text": b"x", b"_answer": b"1"},
            {b"text": b"x", b"_error": b"1", b"_error_code": b"X", b"_error_description": b"y"},
            {b"text": b"x", b"_ask": b"99"},
        ):
            error = self.assertRaises(amp.UnknownRemoteError, self.cluster.result, self.relay(forged))
            self.assertIn("reserved for AMP", str(error))
            answer = self.cluster.result(self.cluster.callWorker(2, Echo, text="alive"))
            self.assertEqual(answer, {"text": "alive", "worker": 2})

    def test_aBoxThatDoesNotParseIsRefused(self) -> None:
        d = callCommand(
            self.channel,
            commands.Relay,
            {"worker": 2, "command": b"Echo", "box": b"\x00\x04text", "timeout": None},
        )
        self.assertRaises(amp.UnknownRemoteError, self.cluster.result, d)
        self.assertEqual(self.cluster.result(self.cluster.callWorker(2, Echo, text="ok"))["text"], "ok")


class SizeLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cluster = FakeCluster(APP, workers=2)
        self.worker = self.cluster.workers[1].context
        self.limit = amp.MAX_VALUE_LENGTH

    def test_valueOverTheLimitIsRefusedBeforeAnythingIsSent(self) -> None:
        transport = self.cluster.workers[1]._pump.clientIO
        d = self.worker.callMaster(Small, data=b"x" * (self.limit + 1))
        error = self.failureResultOf(d, ValueTooLong).value
        self.assertIn("'data' of Small is 65536 bytes", str(error))
        self.assertIn("BigBytes", str(error))
        self.assertFalse(transport.getOutBuffer())

    def test_valueAtTheLimitTravels(self) -> None:
        d = self.cluster.callWorker(2, Small, data=b"x" * self.limit)
        self.assertRaises(ValueTooLong, self.cluster.result, d)  # the answer doubles it
        d = self.cluster.callWorker(2, Small, data=b"x" * (self.limit // 2))
        self.assertEqual(len(self.cluster.result(d)["data"]), self.limit - 1)

    def test_answerOverTheLimitFailsWithValueTooLongAndChannelStaysOpen(self) -> None:
        d = self.worker.callMaster(Small, data=b"x" * 40000)
        error = self.assertRaises(ValueTooLong, self.cluster.result, d)
        self.assertIn("answer 'data' of Small is 80000 bytes", str(error))
        d = self.worker.callMaster(Small, data=b"ok")
        self.assertEqual(self.cluster.result(d), {"data": b"okok"})

    def test_relayedValueOverTheLimitIsRefusedBeforeSending(self) -> None:
        d = self.worker.callWorker(2, Small, data=b"x" * (self.limit + 1))
        self.failureResultOf(d, ValueTooLong)

    def test_bigValuesTravelInChunksEveryWay(self) -> None:
        data = bytes(range(256)) * 4096  # 1 MiB
        answer = self.cluster.result(self.worker.callMaster(Blob, data=data))
        self.assertEqual(answer, {"size": len(data), "data": data[::-1]})
        answer = self.cluster.result(self.cluster.callWorker(2, Blob, data=data))
        self.assertEqual(answer["data"], data)
        text = "é" * 100000
        answer = self.cluster.result(self.worker.callWorker(2, Blob, data=data, text=text))
        self.assertEqual(answer, {"size": len(data) + len(text), "data": data})

    def test_emptyBigValueTravels(self) -> None:
        answer = self.cluster.result(self.worker.callMaster(Blob, data=b""))
        self.assertEqual(answer, {"size": 0, "data": b""})


class BoxSizeLimitTests(SynchronousTestCase):
    """
    AMP bounds each value but not the number of keys in a box: the control
    channel closes on a box over its limit instead of holding it.
    """

    def setUp(self) -> None:
        self.received: list[amp.AmpBox] = []
        self.channel = ControlAMP()
        self.channel.maxBoxSize = 10_000
        self.channel.ampBoxReceived = self.received.append  # type: ignore[method-assign]
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def box(self, keys: int, value: bytes = b"v" * 100) -> bytes:
        return amp.AmpBox({b"k%d" % n: value for n in range(keys)}).serialize()

    def test_boxesUnderTheLimitArrive(self) -> None:
        self.channel.dataReceived(self.box(50) * 3)
        self.assertEqual(len(self.received), 3)
        self.assertFalse(self.transport.disconnecting)

    def test_aBoxOverTheLimitClosesTheChannel(self) -> None:
        data = self.box(500)
        for start in range(0, len(data), 1000):
            self.channel.dataReceived(data[start : start + 1000])
        self.assertEqual(self.received, [])
        self.assertTrue(self.transport.disconnecting)
        [event] = [e for e in self.logged if e.get("limit") == 10_000]
        self.assertEqual(event["log_level"], LogLevel.error)

    def test_emptyValuesCountTowardsTheLimit(self) -> None:
        self.channel.dataReceived(self.box(5000, value=b""))
        self.assertEqual(self.received, [])
        self.assertTrue(self.transport.disconnecting)


class ClusterAppLoadingTests(SynchronousTestCase):
    def context(self) -> WorkerContext:
        return WorkerContext(4, amp.AMP(), Clock())

    def test_workerBuildsTheAppThenItsResponders(self) -> None:
        context = self.context()
        factory, responders = buildWorkerApp(APP, "app", context)
        self.assertIsInstance(factory, Site)
        self.assertIsInstance(context.app, Page)
        self.assertIs(context.app.context, context)
        self.assertIsInstance(responders, Teller)
        self.assertIs(responders.context, context)

    def test_plainAppHasNoResponders(self) -> None:
        context = self.context()
        _, responders = buildWorkerApp(Resource(), "app", context)
        self.assertIsNone(responders)

    def test_respondersMayBeALocatorInstance(self) -> None:
        teller = Teller(self.context())
        app = ClusterApp(app=Resource(), workerResponders=teller)
        _, responders = buildWorkerApp(app, "app", self.context())
        self.assertIs(responders, teller)

    def test_respondersThatAreNoLocatorFailToLoad(self) -> None:
        app = ClusterApp(app=Resource(), workerResponders=lambda context: 42)
        error = self.assertRaises(AppLoadError, buildWorkerApp, app, "my.app", self.context())
        self.assertIn("not an amp.CommandLocator", str(error))

    def test_callableReturningAClusterAppIsRefused(self) -> None:
        error = self.assertRaises(AppLoadError, asFactory, lambda: APP, "my.make")
        self.assertIn("name the ClusterApp itself", str(error))

    def test_checkAppLooksInsideAClusterApp(self) -> None:
        checkApp(APP, "my.app")
        self.assertRaises(AppLoadError, checkApp, ClusterApp(app=42), "my.app")

    def test_masterRespondersAreBuiltWithTheService(self) -> None:
        seen = []

        def responders(master: Any) -> Bank:
            seen.append(master)
            return Bank(master)

        service = ClusterService(
            MemoryReactorClock(), ClusterConfig(workers=1), appLocator=responders
        )
        self.assertEqual(seen, [service])
        self.assertTrue(IMasterContext.providedBy(service))
        self.assertEqual(service.workerIds(), [])
        self.failureResultOf(service.callWorker(1, Echo, text="x"), NoSuchWorker)
        self.assertEqual(self.successResultOf(service.broadcast(Echo, text="x")), {})
