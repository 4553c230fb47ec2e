"""
Unit tests of the one way a worker process ends (L{WorkerProcess.stop}):
a real L{WorkerProcess} over a reactor that spawns nothing, and a clock.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import RecordingHandoffObserver
from tests.test_spawning import SpawnReactor
from twisted_cluster import logevents
from twisted_cluster._contract.workerconfig import WorkerConfig
from twisted_cluster._supervision.process import (
    DRAIN,
    DRAINING,
    KILL,
    STOPPED,
    TERMINATE,
    WorkerProcess,
)


class StopTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = SpawnReactor()
        self.readied: list[Any] = []
        self.process = WorkerProcess(
            self.reactor, 1, WorkerConfig(1, None, (), ()), sys.executable,
            onReady=self.readied.append, handoffObserver=RecordingHandoffObserver(),
            listWorkers=list,
        )
        self.process.spawn()
        assert self.process.pid is not None
        self.signals = self.reactor.transports[self.process.pid].signals
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.addCleanup(self._reap)

    def _reap(self) -> None:
        if self.process.state != STOPPED:
            assert self.process.pid is not None
            self.reactor.exit(self.process.pid, -9)

    def killed(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("cluster_event") == logevents.WORKER_KILLED]

    def test_drainIsKilledAfterItsGracePeriod(self) -> None:
        self.process.stop(DRAIN, 5)
        self.assertEqual((self.process.state, self.signals), (DRAINING, []))
        self.reactor.advance(4.9)
        self.assertEqual(self.signals, [])
        self.reactor.advance(0.1)
        self.assertEqual(self.signals, ["KILL"])
        [event] = self.killed()
        self.assertEqual(
            (event["worker_id"], event["worker_pid"], event["stop_mode"], event["within"]),
            (1, self.process.pid, "DRAIN", 5),
        )

    def test_exitCancelsTheKill(self) -> None:
        """
        The KILL timer of a stop goes with the process: nothing stays
        scheduled once it exited (before, the supervisor's SIGTERM left its
        timer pending).
        """
        self.process.stop(TERMINATE, 5)
        self.assertEqual(self.signals, ["TERM"])
        assert self.process.pid is not None
        self.reactor.exit(self.process.pid, 0)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.reactor.advance(10)
        self.assertEqual((self.signals, self.killed()), (["TERM"], []))

    def test_aSecondStopBringsTheKillCloserNeverLater(self) -> None:
        self.process.stop(DRAIN, 30)
        self.process.stop(TERMINATE, 2)
        self.process.stop(DRAIN, 60)
        self.reactor.advance(2)
        self.assertEqual(self.signals, ["TERM", "KILL"])
        self.assertEqual(len(self.reactor.getDelayedCalls()), 0)

    def test_aTerminatedStartingProcessNeverBecomesReady(self) -> None:
        """
        A process told to stop while it starts takes no work even if its
        Ready arrives before the signal does.
        """
        self.process.stop(TERMINATE, 5)
        assert self.process.control is not None
        self.process.control.ready(pid=self.process.pid)
        self.assertEqual((self.readied, self.process.state), ([], DRAINING))

    def test_killIsAtOnce(self) -> None:
        self.process.stop(KILL)
        self.assertEqual(self.signals, ["KILL"])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_aStoppedProcessIsNotSignalled(self) -> None:
        assert self.process.pid is not None
        self.reactor.exit(self.process.pid, 0)
        self.process.stop(KILL)
        self.process.stop(DRAIN, 1)
        self.assertEqual((self.signals, self.reactor.getDelayedCalls()), ([], []))
