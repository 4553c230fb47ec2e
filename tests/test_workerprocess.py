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
from twisted_cluster._contract import STACKS_FD, STACKS_SIGNAL
from twisted_cluster._contract.workerconfig import WorkerConfig
from twisted_cluster._supervision.process import (
    ABORT,
    DRAIN,
    DRAINING,
    KILL,
    STACKS_LIMIT,
    STACKS_QUIET,
    STOPPED,
    TERMINATE,
    WorkerProcess,
)


class _ProcessCase(SynchronousTestCase):
    """
    One real L{WorkerProcess}, spawned on a L{SpawnReactor}.
    """

    def setUp(self) -> None:
        self.reactor = SpawnReactor()
        self.readied: list[Any] = []
        self.process = WorkerProcess(
            self.reactor, 1, WorkerConfig(1, None, (), ()), sys.executable,
            onReady=self.readied.append, handoffObserver=RecordingHandoffObserver(),
            listWorkers=list,
        )
        self.process.spawn()
        # The exit reason is a Failure: consumed here, as the supervisor does.
        self.process.ended.addErrback(lambda reason: None)
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


class StopTests(_ProcessCase):
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


#: What faulthandler writes for a worker blocked in C{stuck_here}.
DUMP = (
    b"Current thread 0x00007f0000000001 (most recent call first):\n"
    b'  File "/srv/app.py", line 12 in stuck_here\n'
    b'  File "/srv/app.py", line 20 in render_GET\n'
)


class AbortTests(_ProcessCase):
    """
    L{ABORT}, the stop of a hung worker: its stacks reach the log, then
    SIGKILL, without a SIGTERM or a kill timeout in between.
    """

    def stacks(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("cluster_event") == logevents.WORKER_STACKS]

    def write(self, data: bytes) -> None:
        assert self.process.pid is not None
        self.reactor.protocols[self.process.pid].childDataReceived(STACKS_FD, data)

    def test_stacksAreLoggedThenTheProcessKilledOnceTheyStop(self) -> None:
        self.process.stop(ABORT, 0.5)
        self.assertEqual((self.process.state, self.signals), (DRAINING, [STACKS_SIGNAL]))
        self.write(DUMP[:40])
        self.reactor.advance(STACKS_QUIET / 2)
        self.write(DUMP[40:])
        self.reactor.advance(STACKS_QUIET * 0.9)
        self.assertEqual(self.signals, [STACKS_SIGNAL])
        self.reactor.advance(STACKS_QUIET * 0.1)
        self.assertEqual(self.signals, [STACKS_SIGNAL, "KILL"])
        [event] = self.stacks()
        self.assertEqual(
            (event["worker_id"], event["worker_pid"], event["truncated"]),
            (1, self.process.pid, False),
        )
        self.assertIn("line 12 in stuck_here", event["stacks"])
        self.assertEqual(len(event["stacks"].splitlines()), 3)

    def test_theStacksPipeIsReadOnlyOnceAskedFor(self) -> None:
        """
        The master does not read the stacks pipe until it asks for the
        stacks: a worker that floods it unasked blocks on its own write
        instead of costing the master a core.
        """
        assert self.process.pid is not None
        reader = self.reactor.transports[self.process.pid].pipes[STACKS_FD]
        self.assertFalse(reader.reading)
        self.process.stop(ABORT, 0.5)
        self.assertTrue(reader.reading)

    def test_noStacksKillsAtTheDeadline(self) -> None:
        """
        A process that cannot write (SIGSTOP) is killed C{within} seconds
        after the request, and the log says it wrote nothing.
        """
        self.process.stop(ABORT, 0.5)
        self.reactor.advance(0.49)
        self.assertEqual(self.signals, [STACKS_SIGNAL])
        self.reactor.advance(0.01)
        self.assertEqual(self.signals, [STACKS_SIGNAL, "KILL"])
        [event] = self.stacks()
        self.assertEqual(event["stacks"], "")

    def test_aStreamOfStacksDoesNotPostponeTheKill(self) -> None:
        self.process.stop(ABORT, 0.5)
        for _ in range(20):
            self.write(DUMP)
            self.reactor.advance(STACKS_QUIET / 2)
        self.assertEqual(self.signals, [STACKS_SIGNAL, "KILL"])

    def test_stacksAreBoundedAndEscaped(self) -> None:
        """
        The worker is untrusted: what it writes is cut at L{STACKS_LIMIT}
        bytes and cannot forge log lines or move a terminal's cursor.
        """
        self.process.stop(ABORT, 0.5)
        self.write(b"\x1b[2J" + b"x" * STACKS_LIMIT)
        self.reactor.advance(STACKS_QUIET)
        [event] = self.stacks()
        self.assertTrue(event["truncated"])
        self.assertNotIn("\x1b", event["stacks"])
        self.assertLessEqual(len(event["stacks"]), STACKS_LIMIT + 10)

    def test_stacksNotAskedForAreDropped(self) -> None:
        self.write(DUMP)
        self.process.stop(KILL)
        assert self.process.pid is not None
        self.reactor.exit(self.process.pid, -9)
        self.assertEqual(self.stacks(), [])

    def test_anExitBeforeTheKillStillLogsTheStacks(self) -> None:
        self.process.stop(ABORT, 0.5)
        self.write(DUMP)
        assert self.process.pid is not None
        self.reactor.exit(self.process.pid, -9)
        self.assertEqual(len(self.stacks()), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_onlyTheKillTheMasterSentCounts(self) -> None:
        """
        L{WorkerProcess.killSent} tells a SIGKILL the master sent from one
        it did not (the kernel's OOM killer, another user).
        """
        self.assertFalse(self.process.killSent)
        self.process.stop(TERMINATE, 5)
        self.assertFalse(self.process.killSent)
        self.reactor.advance(5)
        self.assertTrue(self.process.killSent)
