"""
Stand-ins for the worker processes and the supervisor, shared by the unit
tests of supervision, dispatch and the control plane.  Each provides the
interface the real one does (checked with C{verifyObject} in
L{tests.test_fakes}), so that a test of the master cannot pass against a
fake the real code would not match.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import attr
from constantly import NamedConstant
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_cluster._contract.commands import PingFigures
from twisted_cluster._supervision.interfaces import IWorkerOperations, IWorkerPool
from twisted_cluster._supervision.process import (
    ABORT,
    DRAIN,
    DRAINING,
    KILL,
    READY,
    STARTING,
    STOPPED,
    IHandoffObserver,
    IWorkerProcess,
    WorkerState,
)
from twisted_cluster._supervision.refusal import OperationRefused, RefusalReason


def stateNamed(state: WorkerState | str) -> WorkerState:
    return WorkerState.lookupByValue(state) if isinstance(state, str) else state


def _figures(figures: PingFigures | dict[str, Any]) -> PingFigures:
    return PingFigures(**figures) if isinstance(figures, dict) else figures


@implementer(IWorkerProcess)
@attr.s(auto_attribs=True, eq=False)
class FakeProcess:
    """
    A worker process that records what the master does to it; the test
    makes it ready, answer pings, or exit.  C{state} may be given by its
    name (C{"ready"}).

    It keeps the contract of L{IWorkerProcess.stop}: a stop with a clock
    SIGKILLs (records C{"KILL"}) after C{within} seconds unless the test
    made it exit first.

    @ivar signals: the signals it was sent, in order (C{"TERM"}, C{"KILL"},
        C{"STACKS"} for the stack dump of an L{ABORT}).
    @ivar drained: whether it was asked to drain.
    @ivar stops: every L{stop} call, as C{(mode, within)}.
    @ivar sent: the connections handed to it.
    @ivar pings: the Deferreds of the calls made to it, for the test to fire.
    """

    workerId: int
    pid: int | None = None
    state: WorkerState = attr.ib(default=STARTING, converter=stateNamed)
    clock: IReactorTime | None = None
    onReady: Callable[[Any], None] | None = None
    startedAt: float = 0.0
    readyAt: float | None = None
    appError: str | None = None
    appErrorDetails: str = ""
    ended: Deferred[Failure] = attr.ib(factory=Deferred)
    exitCause: Any = None
    figures: PingFigures = attr.ib(factory=PingFigures, converter=_figures)
    lastPing: float | None = None
    dispatched: int = 0
    handoff: Any = None
    control: Any = None
    finalMetrics: bytes | None = None
    signals: list[str] = attr.ib(factory=list)
    drained: bool = False
    stops: list[tuple[NamedConstant, float]] = attr.ib(factory=list)
    sent: list[Any] = attr.ib(factory=list)
    pings: list[Deferred[dict[str, int]]] = attr.ib(factory=list)
    killSent: bool = False
    _killer: IDelayedCall | None = None

    nextPid = 1000

    def spawn(self) -> None:
        if self.pid is None:
            FakeProcess.nextPid += 1
            self.pid = FakeProcess.nextPid
        if self.clock is not None:
            self.startedAt = self.clock.seconds()

    def becomeReady(self) -> None:
        """
        Say ready, as the worker does over its control channel.
        """
        self.state = READY
        if self.clock is not None:
            self.readyAt = self.clock.seconds()
        if self.onReady is not None:
            self.onReady(self)

    def stop(self, mode: NamedConstant, within: float = 0.0) -> None:
        self.stops.append((mode, within))
        if self.state == STOPPED:
            return
        if mode is KILL:
            self.state = DRAINING
            self._kill()
            return
        if mode is DRAIN:
            self.drained = True
        else:
            self.signals.append("STACKS" if mode is ABORT else "TERM")
        self.state = DRAINING
        if self.clock is None:
            return
        if self._killer is not None and self._killer.active():
            if self._killer.getTime() <= self.clock.seconds() + within:
                return
            self._killer.cancel()
        self._killer = self.clock.callLater(within, self._kill)

    def _kill(self) -> None:
        self.killSent = True
        self.signals.append("KILL")

    def send(self, connections: list[Any]) -> None:
        self.dispatched += len(connections)
        self.sent.extend(connections)

    def callRemote(self, command: Any, **arguments: Any) -> Deferred[dict[str, int]]:
        d: Deferred[dict[str, int]] = Deferred()
        self.pings.append(d)
        return d

    def exit(self, code: int = 0, signal: int | None = None) -> None:
        """
        Exit with C{code}, or die of C{signal}, as the process would.
        """
        self.state = STOPPED
        if self._killer is not None and self._killer.active():
            self._killer.cancel()
        if signal is not None:
            reason: Exception = ProcessTerminated(signal=signal)
        else:
            reason = ProcessDone(0) if code == 0 else ProcessTerminated(code)
        self.ended.callback(Failure(reason))

    def exitDescription(self, reason: Failure) -> str:
        if reason.value.signal is not None:
            return f"signal {reason.value.signal}"
        return f"exit {reason.value.exitCode}"


@implementer(IWorkerPool, IWorkerOperations)
@attr.s(auto_attribs=True)
class FakeSupervisor:
    """
    The workers as the control plane and the dispatch path read them:
    C{slots} hold a process or wait for one (C{None}); C{extra} are
    replacements and retiring processes.  The operations change the slots
    and refuse as the real one does (without logging); a replacement is a
    Deferred in C{replacements} for the test to fire.
    """

    slots: dict[int, FakeProcess | None] = attr.ib(factory=dict)
    extra: list[FakeProcess] = attr.ib(factory=list)
    restarts: Counter[str] = attr.ib(factory=Counter)
    slotRestartCounts: dict[int, int] = attr.ib(factory=dict)
    maxWorkers: int = 16
    killed: list[int] = attr.ib(factory=list)
    replacements: dict[int, Deferred[bool]] = attr.ib(factory=dict)
    nextPid: int = 2000

    def _check(self, operation: str, workerId: int) -> None:
        if workerId not in self.slots:
            raise OperationRefused(
                operation, RefusalReason.NO_SUCH_WORKER, f"no worker {workerId}", workerId
            )

    def add(self) -> int:
        if len(self.slots) >= self.maxWorkers:
            raise OperationRefused("add", RefusalReason.MAX_WORKERS, "--max-workers")
        workerId = max(self.slots, default=0) + 1
        self.nextPid += 1
        self.slots[workerId] = FakeProcess(workerId, self.nextPid, "starting")
        return workerId

    def remove(self, workerId: int | None = None) -> int:
        operation = "remove" if workerId is None else "drain"
        if workerId is not None:
            self._check(operation, workerId)
        if len(self.slots) <= 1:
            raise OperationRefused(operation, RefusalReason.LAST_WORKER, "the last worker")
        workerId = max(self.slots) if workerId is None else workerId
        del self.slots[workerId]
        return workerId

    def kill(self, workerId: int) -> list[int]:
        self._check("kill", workerId)
        self.killed.append(workerId)
        process = self.slots[workerId]
        return [process.pid] if process is not None and process.pid is not None else []

    def restart(self, workerId: int) -> Deferred[bool]:
        self._check("restart", workerId)
        d = self.replacements[workerId] = Deferred()
        return d

    def scale(self, count: int) -> int:
        if count > self.maxWorkers:
            raise OperationRefused(
                "scale", RefusalReason.MAX_WORKERS, f"--max-workers is {self.maxWorkers}"
            )
        while len(self.slots) < count:
            self.add()
        while len(self.slots) > count:
            self.remove()
        return count

    def processes(self) -> list[FakeProcess]:
        return [p for _, p in sorted(self.slots.items()) if p] + self.extra

    def ready(self) -> list[FakeProcess]:
        return [p for p in self.processes() if p.state == READY]

    def slotPids(self) -> dict[int, int | None]:
        return {i: p.pid if p else None for i, p in sorted(self.slots.items())}

    def slotRestarts(self, workerId: int) -> int:
        return self.slotRestartCounts.get(workerId, 0)


@implementer(IHandoffObserver)
@attr.s(auto_attribs=True)
class RecordingHandoffObserver:
    """
    A dispatch path that records what the hand-off channels report, as
    C{(what, process, details)}.
    """

    events: list[tuple[str, Any, Any]] = attr.ib(factory=list)

    def workerAck(self, process: Any, taken: int, closed: int, returned: list[Any]) -> None:
        self.events.append(("ack", process, (taken, closed, returned)))

    def workerLost(self, process: Any, connections: list[Any]) -> None:
        self.events.append(("lost", process, connections))

    def workerStalled(self, process: Any, stalled: bool) -> None:
        self.events.append(("stalled", process, stalled))

    def workerReclaimed(self, process: Any, connections: list[Any]) -> None:
        self.events.append(("reclaimed", process, connections))
