"""
Unit tests of the operations on one worker (drain, kill, restart by id),
of scale and shutdown, and of their refusals: the real L{Supervisor} over
fake processes and a clock, the control site over the fakes of
L{tests.observability_fakes}.
"""

from __future__ import annotations

import io
import json
import sys

from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.observability_fakes import twoWorkers
from tests.test_control import call
from tests.test_supervision import Harness
from twisted_cluster import logevents
from twisted_cluster._master.config import ClusterConfig
from twisted_cluster._master.service import ClusterService
from twisted_cluster._supervision.refusal import OperationRefused
from twisted_cluster.ctl import parser, requestFor, run


class SupervisorOperationTests(SynchronousTestCase):
    def refused(self, h: Harness, key: str) -> dict[str, object]:
        [event] = h.logged(key)
        return event

    def test_drainRemovesThatSlotAndDrainsItsWorker(self) -> None:
        """
        C{drain 2} is C{remove} for the worker chosen: its slot goes (the
        cluster runs one worker less) and its worker drains, not killed
        before the grace period, not replaced.
        """
        h = Harness(self, workers=3, gracePeriod=30)
        w1, w2, w3 = h.startAll()
        self.assertEqual(h.supervisor.remove(2), 2)
        self.assertTrue(w2.drained)
        self.assertEqual(list(h.supervisor.slotPids()), [1, 3])
        w2.exit(0)
        h.clock.advance(60)
        self.assertEqual((len(h.spawned), w2.signals), (3, []))
        [removed] = h.logged(logevents.WORKER_REMOVED)
        self.assertEqual((removed["worker_id"], removed["worker_pid"]), (2, w2.pid))

    def test_drainRefusalsSayWhy(self) -> None:
        h = Harness(self, workers=1)
        h.startAll()
        with self.assertRaises(OperationRefused) as unknown:
            h.supervisor.remove(7)
        self.assertEqual(unknown.exception.reason.value, "no_such_worker")
        self.assertEqual(str(unknown.exception), "drain 7 refused: no worker 7 (workers: 1)")
        with self.assertRaises(OperationRefused) as last:
            h.supervisor.remove(1)
        self.assertEqual(last.exception.reason.value, "last_worker")
        events = h.logged(logevents.REMOVE_REFUSED)
        self.assertEqual(
            [(e["operation"], e["reason"], e["worker_id"]) for e in events],
            [("drain", "no_such_worker", 7), ("drain", "last_worker", 1)],
        )

    def test_killSigkillsAtOnceAndTheSlotRestartsCountedAsKill(self) -> None:
        h = Harness(self, workers=2)
        w1, w2 = h.startAll()
        self.assertEqual(h.supervisor.kill(2), [w2.pid])
        self.assertEqual(w2.signals, ["KILL"])
        w2.exit(-9)
        self.assertEqual(h.supervisor.restarts["kill"], 1)
        [exited] = h.restarts()
        self.assertEqual((exited["worker_id"], exited["cause"]), (2, "kill"))
        h.clock.advance(1)
        self.assertNotEqual(h.supervisor.slotPids()[2], w2.pid)

    def test_killReachesAWorkerThatDrains(self) -> None:
        """
        A worker removed (draining, its slot gone) can still be killed by
        its id: an operator need not wait out its grace period.
        """
        h = Harness(self, workers=2, gracePeriod=30)
        w1, w2 = h.startAll()
        h.supervisor.remove(2)
        self.assertEqual(h.supervisor.kill(2), [w2.pid])
        self.assertEqual(w2.signals, ["KILL"])

    def test_killRefusalsSayWhy(self) -> None:
        h = Harness(self, workers=2)
        w1, w2 = h.startAll()
        self.assertRaises(OperationRefused, h.supervisor.kill, 5)
        w2.exit(1)  # its slot waits for the restart
        with self.assertRaises(OperationRefused) as restarting:
            h.supervisor.kill(2)
        self.assertEqual(restarting.exception.reason.value, "restarting")
        self.assertEqual(
            [e["reason"] for e in h.logged(logevents.KILL_REFUSED)],
            ["no_such_worker", "restarting"],
        )

    def test_restartReplacesThatWorkerOnly(self) -> None:
        h = Harness(self, workers=2, gracePeriod=30)
        w1, w2 = h.startAll()
        done = h.supervisor.restart(1)
        new = h.spawned[-1]
        self.assertEqual((new.workerId, w1.drained), (1, False))
        h.ready(new)
        self.assertTrue(self.successResultOf(done))
        self.assertTrue(w1.drained)
        self.assertFalse(w2.drained)
        self.assertEqual(h.supervisor.slotPids(), {1: new.pid, 2: w2.pid})

    def test_restartRefusals(self) -> None:
        h = Harness(self, workers=1)
        h.startAll()
        self.assertRaises(OperationRefused, h.supervisor.restart, 3)
        h.supervisor.stop()
        with self.assertRaises(OperationRefused) as stopping:
            h.supervisor.restart(1)
        self.assertEqual(stopping.exception.reason.value, "stopping")
        self.assertEqual(
            [e["reason"] for e in h.logged(logevents.RESTART_REFUSED)],
            ["no_such_worker", "stopping"],
        )

    def test_scalePastMaxWorkersIsRefusedInTheLogToo(self) -> None:
        """
        A C{scale} refused by C{--max-workers} says so in the master's log,
        once, and changes nothing.
        """
        h = Harness(self, workers=2, maxWorkers=4)
        h.startAll()
        with self.assertRaises(OperationRefused) as refused:
            h.supervisor.scale(5)
        self.assertIn("--max-workers, which is 4", str(refused.exception))
        [event] = h.logged(logevents.ADD_REFUSED)
        self.assertEqual((event["operation"], event["reason"]), ("scale", "max_workers"))
        self.assertEqual(list(h.supervisor.slotPids()), [1, 2])
        self.assertEqual(h.supervisor.scale(4), 4)
        self.assertEqual(list(h.supervisor.slotPids()), [1, 2, 3, 4])

    def test_addWhileStoppingSaysStopping(self) -> None:
        h = Harness(self, workers=1)
        h.startAll()
        h.supervisor.stop()
        self.assertIsNone(h.supervisor.addWorker())
        [event] = h.logged(logevents.ADD_REFUSED)
        self.assertEqual(event["reason"], "stopping")


class ShutdownTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.service = ClusterService(self.reactor, ClusterConfig())
        self.stops: list[bool] = []
        self.service.requestStop = lambda: self.stops.append(True)

    def test_shutdownStopsAfterTheAnswer(self) -> None:
        self.service.shutdown()
        self.assertEqual(self.stops, [])
        self.reactor.advance(0)
        self.assertEqual(self.stops, [True])

    def test_aSecondGracefulShutdownIsRefused(self) -> None:
        self.service.stopService()
        with self.assertRaises(OperationRefused) as refused:
            self.service.shutdown()
        self.assertEqual(refused.exception.reason.value, "stopping")
        self.service.shutdown(now=True)
        self.reactor.advance(0)
        self.assertEqual(self.stops, [])


class SignalResizeRefusalTests(SynchronousTestCase):
    """
    SIGTTIN and SIGTTOU refused by the service (stopping, not started)
    leave their reason in the log, as every other refusal does.
    """

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.service = ClusterService(MemoryReactorClock(), ClusterConfig())

    def refusals(self) -> list[tuple[object, object, object]]:
        return [(e["cluster_event"], e["operation"], e["reason"]) for e in self.events
                if e.get("cluster_event") in (logevents.ADD_REFUSED, logevents.REMOVE_REFUSED)]

    def test_beforeTheWorkersStart(self) -> None:
        self.assertEqual((self.service.addWorker(), self.service.removeWorker()), (None, None))
        self.assertEqual(self.refusals(), [
            (logevents.ADD_REFUSED, "add", "not_running"),
            (logevents.REMOVE_REFUSED, "remove", "not_running"),
        ])

    def test_whileStopping(self) -> None:
        self.service.stopService()
        self.assertIsNone(self.service.addWorker())
        self.assertEqual(self.refusals(), [(logevents.ADD_REFUSED, "add", "stopping")])


class SiteOperationTests(SynchronousTestCase):
    def test_drainKillAndRestartTakeAWorkerId(self) -> None:
        service = twoWorkers()
        supervisor = service.supervisor
        assert supervisor is not None
        self.assertEqual(call(service, b"POST", "/kill?worker=2")[0], 202)
        self.assertEqual(supervisor.killed, [2])
        self.assertEqual(call(service, b"POST", "/restart?worker=1")[0], 202)
        self.assertEqual(list(supervisor.replacements), [1])
        self.assertEqual(service.rollouts, [])
        self.assertEqual(call(service, b"POST", "/drain?worker=1")[0], 202)
        self.assertEqual(list(supervisor.slots), [2])

    def test_aRefusalAnswers409WithTheReason(self) -> None:
        service = twoWorkers()
        code, body = call(service, b"POST", "/drain?worker=9")
        self.assertEqual(code, 409)
        answer = json.loads(body)
        self.assertEqual(
            (answer["operation"], answer["reason"], answer["error"]),
            ("drain", "no_such_worker", "drain 9 refused: no worker 9"),
        )

    def test_aMissingOrMalformedIdIsABadRequest(self) -> None:
        service = twoWorkers()
        for path in ("/kill", "/kill?worker=two", "/drain", "/restart?worker=",
                     "/kill?worker=1_0", "/kill?worker=+1", "/kill?worker=%201%20",
                     "/kill?worker=" + "9" * 5000):
            code, body = call(service, b"POST", path)
            self.assertEqual(code, 400, path)
            self.assertIn("needs worker=ID", json.loads(body)["error"])

    def test_shutdownAndShutdownNow(self) -> None:
        service = twoWorkers()
        self.assertEqual(call(service, b"POST", "/shutdown")[0], 202)
        self.assertEqual(call(service, b"POST", "/shutdown?now=1")[0], 202)
        self.assertEqual(service.shutdowns, [False, True])

    def test_rollingRestartWhileStoppingIsRefusedWithTheReason(self) -> None:
        service = twoWorkers()
        service.stopping = True
        code, body = call(service, b"POST", "/restart")
        self.assertEqual((code, json.loads(body)["reason"]), (409, "stopping"))
        self.assertEqual(service.rollouts, [])


class CtlCommandTests(SynchronousTestCase):
    def request(self, *argv: str) -> tuple[bytes, str]:
        return requestFor(parser().parse_args(argv))

    def test_eachCommandHasItsEndpoint(self) -> None:
        self.assertEqual(self.request("drain", "3"), (b"POST", "drain?worker=3"))
        self.assertEqual(self.request("kill", "2"), (b"POST", "kill?worker=2"))
        self.assertEqual(self.request("restart", "1"), (b"POST", "restart?worker=1"))
        self.assertEqual(self.request("restart"), (b"POST", "restart"))
        self.assertEqual(self.request("shutdown"), (b"POST", "shutdown"))
        self.assertEqual(self.request("shutdown", "--now"), (b"POST", "shutdown?now=1"))
        self.assertEqual(self.request("scale", "4"), (b"POST", "scale?workers=4"))

    def test_usageErrorsAreOneLineAndExitStatus1(self) -> None:
        """
        As documented for every error of C{ctl}: one line on stderr, exit
        status 1 (argparse would print its usage and exit 2).
        """
        for argv in (["drain"], ["kill", "two"], ["kill", "1_0"], ["scale", "+3"],
                     ["frobnicate"], []):
            stderr = io.StringIO()
            self.patch(sys, "stderr", stderr)
            code = self.successResultOf(
                Deferred.fromCoroutine(run(MemoryReactorClock(), argv))
            )
            self.assertEqual(code, 1, argv)
            lines = stderr.getvalue().splitlines()
            self.assertEqual(len(lines), 1, lines)
            self.assertTrue(lines[0].startswith("ctl: error: "), lines)
