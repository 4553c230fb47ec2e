"""
Keep the configured number of workers running.

The supervisor spawns workers, notices when they exit and restarts them.
A worker that crashed while serving (it had been ready) is replaced at
once, unless its slot is in a crash loop; one that cannot start (a bad
C{--app}, a fork refused) is retried with exponential backoff, and stops
the master when start-ups keep failing with no worker left serving.  It
stops them gracefully: drain, wait for the grace period, SIGKILL what is
left.

It decides with the pure objects of L{twisted_cluster._supervision.backoff}, and acts
through L{WorkerProcess}: tests drive it with a fake process factory and a
L{Clock}.
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Sequence

import attr
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_cluster import logevents
from twisted_cluster._supervision.causes import (
    CRASH,
    HANG,
    ROLLOUT,
    STARTUP,
    EndCause,
    ExitCause,
    RestartCause,
)
from twisted_cluster._supervision.interfaces import (
    IWorkerObserver,
    IWorkerOperations,
    IWorkerPool,
)
from twisted_cluster._supervision.oom import OOMVerdict, OOMWitness
from twisted_cluster._supervision.process import (
    ABORT,
    DRAIN,
    KILL,
    READY,
    STACKS_WAIT,
    STARTING,
    STOPPED,
    TERMINATE,
    IWorkerProcess,
    SpawnFailed,
    workerFields,
)
from twisted_cluster._supervision.refusal import OperationRefused, RefusalReason, refuse
from twisted_cluster._supervision.startfailure import StartFailure

if TYPE_CHECKING:
    # The master's configuration, read here, typed only: supervision sits
    # below the master's side and imports nothing from it.
    from twisted_cluster._master.config import ClusterConfig

log = Logger()

@attr.s(auto_attribs=True, eq=False)
class _Slot:
    """
    One place in the pool: the process that fills it and its restart record.
    Compared by identity: a slot removed and one added since under the same
    id are two slots.
    """

    workerId: int
    process: IWorkerProcess | None = None
    #: Start-ups that failed in a row (reset when a worker is ready).
    failures: int = 0
    #: When its workers crashed while serving, within the crash window.
    crashes: list = attr.ib(factory=list)
    restart: Any = None
    restarts: int = 0
    #: The process starting to replace C{process} (rolling restart, recycling).
    pending: IWorkerProcess | None = None
    #: Why C{pending} was started: L{ROLLOUT} or L{RECYCLE}.
    cause: RestartCause | None = None
    #: Fired with whether C{pending} took over the slot.
    waiters: list = attr.ib(factory=list)
    #: How the last replacement that failed to start failed.
    replacementFailure: StartFailure | None = None


@implementer(IWorkerPool, IWorkerOperations)
class Supervisor:
    """
    Runs C{config.workers} workers and replaces those that exit.

    @ivar restarts: restarts so far, by cause.
    @ivar everReady: whether any worker was ever ready.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        config: ClusterConfig,
        makeProcess: Callable[[int, Callable[[IWorkerProcess], None]], IWorkerProcess],
        onFatal: Callable[[str], None],
        observers: Sequence[IWorkerObserver] = (),
        oom: OOMWitness | None = None,
    ) -> None:
        """
        @param makeProcess: builds (does not spawn) the process for a slot,
            given the slot's worker id and what the process calls once it
            is ready.
        @param onFatal: called once with one line when workers cannot start.
        @param observers: told, in order, of each worker's life
            (L{IWorkerObserver}).
        @param oom: says whether a SIGKILL the master did not send came
            from the kernel's OOM killer (default: a witness that cannot
            tell, "possibly out of memory").
        """
        self._oom = oom if oom is not None else OOMWitness(lambda: None)
        self._reactor = reactor
        self._config = config
        self._makeProcess = makeProcess
        self._observers = list(observers)
        self._onFatal = onFatal
        self._slots: dict[int, _Slot] = {}
        #: Slots waiting for their turn to start (L{_spawn}), in order.
        self._queued: list[_Slot] = []
        self._retired: set[IWorkerProcess] = set()
        self._startupFailures = 0
        self._shownErrors: set[str] = set()
        self._stopping = False
        self._fatal = False
        self.everReady = False
        self.restarts: Counter[str] = Counter()

    def addObserver(self, observer: IWorkerObserver) -> None:
        """
        Tell C{observer} too, after those given at construction.
        """
        self._observers.append(observer)

    def _tell(self, event: str, process: IWorkerProcess, *args: Any) -> None:
        """
        Call C{event} on every observer; one that raises is logged (with
        the worker) and the others are told all the same: no observer
        breaks supervision.
        """
        for observer in self._observers:
            try:
                getattr(observer, event)(process, *args)
            except Exception:
                log.failure(
                    "worker {worker_id} pid {worker_pid}: an observer of "
                    "{observed} failed",
                    cluster_event=logevents.OBSERVER_FAILED,
                    worker_id=process.workerId,
                    worker_pid=process.pid,
                    observed=event,
                )

    def _exitCause(self, process: IWorkerProcess) -> ExitCause:
        """
        Why C{process} ends: the cause the master gave it, else a start-up
        that failed, a stop, or a crash.
        """
        if process.exitCause is not None:
            cause: ExitCause = process.exitCause
            return cause
        if process.readyAt is None:
            return STARTUP
        if self.stopping:
            return EndCause.STOPPED
        return CRASH

    # Queries

    def processes(self) -> list[IWorkerProcess]:
        """
        Every live worker process, slot holders first, by worker id, then
        replacements still starting, then processes being retired.
        """
        live = [s.process for _, s in sorted(self._slots.items()) if s.process]
        live += [s.pending for _, s in sorted(self._slots.items()) if s.pending]
        return live + sorted(self._retired - set(live), key=lambda p: p.workerId)

    @property
    def stopping(self) -> bool:
        """
        Whether the supervisor is stopping (or gave up): no more replacing.
        """
        return self._stopping or self._fatal

    def slotPids(self) -> dict[int, int | None]:
        """
        Worker id -> pid of the process holding that slot (C{None} while the
        slot waits for a restart).
        """
        return {
            workerId: slot.process.pid if slot.process else None
            for workerId, slot in sorted(self._slots.items())
        }

    def canReplace(self, process: IWorkerProcess) -> bool:
        """
        Whether C{process} holds its slot and no replacement is starting.
        """
        slot = self._slots.get(process.workerId)
        return (
            not self.stopping
            and slot is not None
            and slot.process is process
            and slot.pending is None
        )

    def ready(self) -> list[IWorkerProcess]:
        """
        The workers that may take connections now, by worker id.
        """
        return [p for p in self.processes() if p.state == READY]

    def slotRestarts(self, workerId: int) -> int:
        slot = self._slots.get(workerId)
        return slot.restarts if slot else 0

    def replacementFailure(self, workerId: int) -> StartFailure | None:
        """
        How the last replacement of slot C{workerId} that failed to start
        (L{replace} fired C{False}) failed, if one did.
        """
        slot = self._slots.get(workerId)
        return slot.replacementFailure if slot else None

    # Actions

    def start(self) -> None:
        """
        Spawn the configured number of workers, C{startConcurrency} at a
        time: the others start as soon as one of those is ready (or failed).
        """
        for workerId in range(1, self._config.workers + 1):
            if self._fatal:
                # Every spawn failed: no point forking the rest.
                return
            self._slots[workerId] = _Slot(workerId)
            self._spawn(self._slots[workerId])

    def _spawn(self, slot: _Slot) -> IWorkerProcess | None:
        """
        Start a process in C{slot}, or queue the slot when
        C{startConcurrency} workers are starting already: started together
        on a few cores, N workers all become ready only after N start-ups'
        worth of CPU, so the first one serves much later than if it had
        the cores to itself.

        @return: the process started, C{None} when queued.
        """
        slot.restart = None
        if self._starting() >= self._config.startConcurrency:
            if slot not in self._queued:
                self._queued.append(slot)
                log.info(
                    "worker {worker_id} waits its turn to start: {starting} "
                    "workers starting",
                    cluster_event=logevents.WORKER_QUEUED,
                    worker_id=slot.workerId,
                    starting=self._starting(),
                )
            return None
        process = self._makeProcess(slot.workerId, self._processReady)
        slot.process = process
        return self._launch(process)

    def _starting(self) -> int:
        return sum(1 for p in self.processes() if p.state == STARTING)

    def _startQueued(self) -> None:
        """
        Start queued slots while fewer than C{startConcurrency} workers are
        starting.
        """
        while (
            self._queued
            and not self.stopping
            and self._starting() < self._config.startConcurrency
        ):
            slot = self._queued.pop(0)
            if self._slots.get(slot.workerId) is slot and slot.process is None:
                self._spawn(slot)

    def _launch(self, process: IWorkerProcess) -> IWorkerProcess:
        process.spawn()
        timeout = None
        if process.state != STOPPED:
            log.info(
                "worker {worker_id} pid {worker_pid} started",
                cluster_event=logevents.WORKER_STARTED,
                **workerFields(process),
            )
            timeout = self._reactor.callLater(
                self._config.startTimeout, self._startTimedOut, process
            )
            self._tell("workerStarted", process)
        # addBoth: "ended" fires with a Failure (the exit reason); at once
        # when the spawn failed.
        process.ended.addBoth(self._exited, process, timeout)
        return process

    def _startTimedOut(self, process: IWorkerProcess) -> None:
        if process.state == STARTING:
            log.warn(
                "worker {worker_id} pid {worker_pid} not ready after {timeout}s: killing it",
                cluster_event=logevents.WORKER_START_TIMEOUT,
                **workerFields(process),
                timeout=self._config.startTimeout,
            )
            process.exitCause = STARTUP
            process.stop(TERMINATE, self._config.killTimeout)

    def _exited(self, reason: Failure, process: IWorkerProcess, timeout: Any) -> None:
        if timeout is not None and timeout.active():
            timeout.cancel()
        self._handleExit(reason, process)
        # After the exit is handled: it may find the cause (the OOM killer).
        cause = self._exitCause(process)
        if not reason.check(SpawnFailed):
            self._tell("workerExited", process, cause, reason)
        self._startQueued()

    def _handleExit(self, reason: Failure, process: IWorkerProcess) -> None:
        how = self._outOfMemory(process, reason, process.exitDescription(reason))
        if reason.check(SpawnFailed):
            log.error(
                "worker {worker_id} could not be started: {error}",
                cluster_event=logevents.WORKER_SPAWN_FAILED,
                worker_id=process.workerId,
                error=str(reason.value),
            )
        slot = self._slots.get(process.workerId)
        if slot is not None and slot.pending is process:
            self._replacementFailed(slot, process, how)
            return
        current = slot is not None and slot.process is process
        if current:
            assert slot is not None
            slot.process = None
        self._retired.discard(process)
        if self._stopping or self._fatal or not current:
            log.info(
                "worker {worker_id} pid {worker_pid} exited: {how}",
                cluster_event=logevents.WORKER_EXITED,
                **workerFields(process),
                how=how,
            )
            return
        assert slot is not None
        if process.readyAt is None:
            self._startFailed(slot, process, how, reason)
            if self._fatal:
                return
            cause = STARTUP
            slot.failures += 1
            delay = self._config.backoff.delay(slot.failures)
        else:
            cause = process.exitCause or CRASH
            delay = self._crashDelay(slot)
        self.restarts[cause.value] += 1
        slot.restarts += 1
        if slot.pending is not None:
            log.warn(
                "worker {worker_id} pid {worker_pid} exited ({how}, {cause}): its "
                "replacement pid {new_pid} takes the slot",
                cluster_event=logevents.WORKER_EXITED,
                **workerFields(process),
                how=how,
                cause=cause.value,
                new_pid=slot.pending.pid,
            )
            return
        log.warn(
            "worker {worker_id} pid {worker_pid} exited ({how}, {cause}): restarting in {delay:.2f}s",
            cluster_event=logevents.WORKER_EXITED,
            **workerFields(process),
            how=how,
            cause=cause.value,
            delay=delay,
            crashes=len(slot.crashes),
            failures=slot.failures,
        )
        slot.restart = self._reactor.callLater(delay, self._spawn, slot)

    def _outOfMemory(self, process: IWorkerProcess, reason: Failure, how: str) -> str:
        """
        C{how} C{process} ended, with what the OOM witness says when a
        SIGKILL the master did not send ended it; a kill by the OOM killer
        is logged as such and counted as L{RestartCause.OOM}.
        """
        if getattr(reason.value, "signal", None) != signal.SIGKILL or process.killSent:
            return how
        verdict, source = self._oom.verdict(process.pid)
        if verdict is OOMVerdict.NOT:
            return how
        killed = verdict is OOMVerdict.KILLED
        if killed and process.exitCause is None:
            process.exitCause = RestartCause.OOM
        what = "out of memory (killed by the kernel's OOM killer)" if killed else (
            "possibly out of memory (a SIGKILL the master did not send)"
        )
        log.warn(
            "worker {worker_id} pid {worker_pid} died of SIGKILL: {what}",
            cluster_event=logevents.WORKER_OUT_OF_MEMORY,
            worker_id=process.workerId,
            worker_pid=process.pid,
            what=what,
            verdict=verdict.value,
            source=source,
        )
        return f"{how}, {what}"

    def _crashDelay(self, slot: _Slot) -> float:
        """
        Record a crash of C{slot}'s worker, which had been serving, and
        choose its restart delay with the crash guard.
        """
        guard = self._config.crashGuard
        now = self._reactor.seconds()
        slot.crashes = guard.recent(slot.crashes, now) + [now]
        return guard.delay(slot.crashes, now, len(self.ready()))

    def _startFailed(
        self, slot: _Slot, process: IWorkerProcess, how: str, reason: Failure
    ) -> None:
        self._startupFailures += 1
        error = process.appError
        if error is not None and error not in self._shownErrors:
            self._shownErrors.add(error)
            log.error(
                "worker {worker_id} pid {worker_pid} could not load the app: {error}\n{details}",
                cluster_event=logevents.WORKER_APP_ERROR,
                **workerFields(process),
                error=error,
                details=process.appErrorDetails,
            )
        if reason.check(SpawnFailed):
            why: str | None = f"cannot start a worker process: {reason.value}"
        elif process.exitCause == STARTUP:  # killed by _startTimedOut
            why = f"worker not ready within --start-timeout {self._config.startTimeout:g}s"
        else:
            why = None
        verdict = self._config.startup.judge(
            self._startupFailures, self.everReady, error, len(self.ready()), why
        )
        if verdict.fatal:
            self._fatal = True
            self._onFatal(verdict.reason)
        elif self._startupFailures >= self._config.startup.maxFailures:
            log.error(
                "worker {worker_id} pid {worker_pid} failed to start ({failures} start-ups "
                "in a row): retrying with backoff; workers still serving: {serving}",
                cluster_event=logevents.WORKER_START_FAILING,
                **workerFields(process),
                failures=self._startupFailures,
                serving=len(self.ready()),
            )

    def _processReady(self, process: IWorkerProcess) -> None:
        """
        C{process} said it is ready: record it, let it take over its slot if
        it replaces another, and tell the observers.  A process retired
        while it was starting never gets here: it was told to stop, and
        takes no work (L{IWorkerProcess.stop}).
        """
        self.everReady = True
        self._startupFailures = 0
        log.info(
            "worker {worker_id} pid {worker_pid} ready",
            cluster_event=logevents.WORKER_READY,
            **workerFields(process),
        )
        slot = self._slots.get(process.workerId)
        if slot is not None and process in (slot.process, slot.pending):
            slot.failures = 0
        old: IWorkerProcess | None = None
        waiters: list[Deferred[bool]] = []
        if slot is not None and slot.pending is process:
            old, waiters = self._takeOver(slot, process)
        self._startQueued()
        # The new worker is ready before the old one drains, for observers
        # too; a roll-out moves on to the next slot after both.
        self._tell("workerReady", process)
        if old is not None:
            self._tell("workerDraining", old, self._exitCause(old))
        for d in waiters:
            d.callback(True)

    # Replacing, resizing

    def replace(self, workerId: int, cause: RestartCause) -> Deferred[bool]:
        """
        Replace the process of slot C{workerId} gracefully: start a new one
        (same worker id, the app imported afresh) and, once it is ready,
        drain the old one.  The slot keeps its id: metrics and the dispatch
        policy see the same ids before and after.

        @param cause: L{ROLLOUT} or L{RECYCLE}, counted in L{restarts} once
            the new process took over.
        @return: fires with C{True} once the new process took over, C{False}
            when it failed to start (the old one keeps serving) or the
            cluster is stopping.  A replacement already starting for the
            slot is shared.
        """
        slot = self._slots.get(workerId)
        if slot is None or self.stopping:
            return succeed(False)
        if slot.process is None:
            # Waiting for a restart, which will load the app afresh anyway.
            return succeed(True)
        d: Deferred[bool] = Deferred()
        slot.waiters.append(d)
        if slot.pending is None:
            slot.cause = cause
            slot.pending = self._makeProcess(workerId, self._processReady)
            self._launch(slot.pending)
        return d

    def _takeOver(
        self, slot: _Slot, process: IWorkerProcess
    ) -> tuple[IWorkerProcess | None, list[Deferred[bool]]]:
        """
        C{process} takes over C{slot}; the process it replaces drains.

        @return: the process replaced, if it was ready (its observers are
            yet to hear that it drains), and the waiters of L{replace}, to
            fire once the observers were told.
        """
        old = slot.process
        slot.process = process
        slot.pending = None
        draining = None
        if old is not None:
            cause = slot.cause or ROLLOUT
            self.restarts[cause.value] += 1
            slot.restarts += 1
            self._retired.add(old)
            old.exitCause = cause
            draining = old if old.state == READY else None
            log.info(
                "worker {worker_id} pid {worker_pid} replaced by pid {new_pid} "
                "({cause}): draining it",
                cluster_event=logevents.WORKER_REPLACED,
                worker_id=slot.workerId,
                worker_pid=old.pid,
                new_pid=process.pid,
                cause=cause.value,
            )
            self._retire(old, tell=False)
        waiters, slot.waiters = slot.waiters, []
        return draining, waiters

    def _replacementFailed(self, slot: _Slot, process: IWorkerProcess, how: str) -> None:
        slot.pending = None
        old = slot.process
        failure = slot.replacementFailure = StartFailure.fromWorker(
            how, process.appError, process.appErrorDetails
        )
        log.error(
            "worker {worker_id} pid {worker_pid} exited before it was ready ({how}"
            "{error_text}): {outcome}",
            cluster_event=logevents.WORKER_REPLACEMENT_FAILED,
            **workerFields(process),
            error_text=f": {process.appError}" if process.appError else "",
            outcome=f"pid {old.pid} keeps serving" if old else "no replacement",
            **failure.fields(),
        )
        if old is None and not self.stopping:
            slot.failures += 1
            slot.restart = self._reactor.callLater(
                self._config.backoff.delay(slot.failures), self._spawn, slot
            )
        waiters, slot.waiters = slot.waiters, []
        for d in waiters:
            d.callback(False)

    def _retire(self, process: IWorkerProcess, tell: bool = True) -> None:
        """
        Take C{process} out of service: a starting one is terminated (it
        cannot drain), a ready one drains; either is SIGKILLed if it
        outlasts the kill timeout or the grace period.

        @param tell: tell the observers that a ready C{process} drains.
        """
        if process.state == STARTING:
            process.stop(TERMINATE, self._config.killTimeout)
            return
        wasReady = process.state == READY
        process.stop(DRAIN, self._config.gracePeriod)
        if wasReady and tell:
            self._tell("workerDraining", process, self._exitCause(process))

    def killHung(self, process: IWorkerProcess) -> None:
        """
        Replace C{process}, whose reactor is blocked: no more work for it,
        its stacks to the log, then SIGKILL (L{ABORT}); its restart is
        counted as L{HANG}.
        """
        wasReady = process.state == READY
        process.exitCause = HANG
        process.stop(ABORT, STACKS_WAIT)
        if wasReady:
            self._tell("workerDraining", process, HANG)

    # Operations on workers (SIGTTIN, SIGTTOU and the control site)

    def add(self) -> int:
        """
        Add one worker, in the lowest free slot id.

        @return: the new worker id (the worker is starting).
        @raise OperationRefused: the cluster is stopping, or C{maxWorkers}
            run already (logged once, with the reason).
        """
        if self.stopping:
            raise refuse("add", RefusalReason.STOPPING, "the cluster is stopping",
                         cluster_event=logevents.ADD_REFUSED)
        if len(self._slots) >= self._config.maxWorkers:
            raise refuse(
                "add", RefusalReason.MAX_WORKERS,
                f"--max-workers is {self._config.maxWorkers}, and as many run",
                cluster_event=logevents.ADD_REFUSED, count=len(self._slots),
            )
        workerId = 1
        while workerId in self._slots:
            workerId += 1
        slot = self._slots[workerId] = _Slot(workerId)
        process = self._spawn(slot)
        log.info(
            "worker {worker_id} pid {worker_pid} added; workers: {count}",
            cluster_event=logevents.WORKER_ADDED,
            worker_id=workerId,
            worker_pid=process.pid if process else None,
            count=len(self._slots),
        )
        return workerId

    def addWorker(self) -> int | None:
        """
        L{add}, or C{None} when refused.
        """
        try:
            return self.add()
        except OperationRefused:
            return None

    def remove(self, workerId: int | None = None) -> int:
        """
        Remove worker C{workerId} (by default the highest id), slot and
        all: it drains (finishes its requests) and exits; it is not killed
        before the grace period, and not replaced: the cluster runs one
        worker less, as with Node's C{worker.disconnect()}.

        @return: the removed worker id.
        @raise OperationRefused: the cluster is stopping, there is no such
            worker, or it is the last one (logged once, with the reason).
        """
        operation = "remove" if workerId is None else "drain"
        if self.stopping:
            raise refuse(operation, RefusalReason.STOPPING, "the cluster is stopping",
                         cluster_event=logevents.REMOVE_REFUSED, workerId=workerId)
        if workerId is not None and workerId not in self._slots:
            raise refuse(operation, RefusalReason.NO_SUCH_WORKER, self._noSuch(workerId),
                         cluster_event=logevents.REMOVE_REFUSED, workerId=workerId)
        if len(self._slots) <= 1:
            raise refuse(operation, RefusalReason.LAST_WORKER, "the last worker stays",
                         cluster_event=logevents.REMOVE_REFUSED, workerId=workerId)
        if workerId is None:
            workerId = max(self._slots)
        slot = self._slots.pop(workerId)
        if slot.restart is not None and slot.restart.active():
            slot.restart.cancel()
        if slot in self._queued:
            self._queued.remove(slot)
        for process in (slot.process, slot.pending):
            if process is not None:
                self._retired.add(process)
                process.exitCause = EndCause.REMOVED
                self._retire(process)
        log.info(
            "worker {worker_id} pid {worker_pid} removed: draining it; workers left: {count}",
            cluster_event=logevents.WORKER_REMOVED,
            worker_id=workerId,
            worker_pid=slot.process.pid if slot.process else None,
            count=len(self._slots),
        )
        waiters, slot.waiters = slot.waiters, []
        for d in waiters:
            d.callback(False)
        return workerId

    def removeWorker(self) -> int | None:
        """
        L{remove} the worker with the highest id, or C{None} when refused.
        """
        try:
            return self.remove()
        except OperationRefused:
            return None

    def _noSuch(self, workerId: int) -> str:
        ids = ", ".join(str(i) for i in sorted(self._slots)) or "none"
        return f"no worker {workerId} (workers: {ids})"

    def kill(self, workerId: int) -> list[int]:
        """
        SIGKILL worker C{workerId} now, as gunicorn's and Node's C{kill}
        do: what it was serving fails, what it had not received goes to the
        other workers, and its slot restarts at once (counted as
        C{"kill"}).  A worker being removed or replaced with that id (it
        drains) is killed instead when its slot holds none; so is it while
        the cluster stops, which then waits no longer for it.

        @return: the pids killed.
        @raise OperationRefused: there is no such worker, or its slot waits
            for a restart (logged once, with the reason).
        """
        slot = self._slots.get(workerId)
        holder = slot.process if slot is not None else None
        if holder is not None and holder.state != STOPPED:
            targets = [holder]
        else:
            targets = sorted(
                (p for p in self._retired if p.workerId == workerId and p.state != STOPPED),
                key=lambda p: p.startedAt,
            )
        if not targets:
            reason, why = (
                (RefusalReason.RESTARTING, f"worker {workerId} is restarting: no process to kill")
                if slot is not None
                else (RefusalReason.NO_SUCH_WORKER, self._noSuch(workerId))
            )
            raise refuse("kill", reason, why, cluster_event=logevents.KILL_REFUSED,
                         workerId=workerId)
        for process in targets:
            if process.exitCause is None:
                process.exitCause = RestartCause.KILLED
            process.stop(KILL)
        return [p.pid for p in targets if p.pid is not None]

    def restart(self, workerId: int) -> Deferred[bool]:
        """
        Replace worker C{workerId} gracefully (L{replace}, counted as
        C{"rollout"}): its replacement is ready before it drains.

        @raise OperationRefused: the cluster is stopping, or there is no
            such worker (logged once, with the reason).
        """
        if self.stopping:
            raise refuse("restart", RefusalReason.STOPPING, "the cluster is stopping",
                         cluster_event=logevents.RESTART_REFUSED, workerId=workerId)
        if workerId not in self._slots:
            raise refuse("restart", RefusalReason.NO_SUCH_WORKER, self._noSuch(workerId),
                         cluster_event=logevents.RESTART_REFUSED, workerId=workerId)
        return self.replace(workerId, ROLLOUT)

    def scale(self, count: int) -> int:
        """
        Add or remove workers until C{count} are wanted, or change nothing.

        @raise ValueError: C{count} is below 1.
        @raise OperationRefused: the cluster is stopping, or C{count} is
            past C{maxWorkers} (logged once, with the reason).
        """
        if count < 1:
            raise ValueError("scale needs a whole number of workers >= 1")
        growing = count > len(self._slots)
        if self.stopping:
            raise refuse(
                "scale", RefusalReason.STOPPING, "the cluster is stopping",
                cluster_event=logevents.ADD_REFUSED if growing else logevents.REMOVE_REFUSED,
            )
        if count > self._config.maxWorkers:
            raise refuse(
                "scale", RefusalReason.MAX_WORKERS,
                f"{count} workers is past --max-workers, which is {self._config.maxWorkers}",
                cluster_event=logevents.ADD_REFUSED, count=count,
            )
        while len(self._slots) < count:
            self.add()
        while len(self._slots) > count:
            self.remove()
        return count

    def stop(self) -> Deferred[Any]:
        """
        Stop every worker gracefully: drain, wait up to the grace period,
        then SIGKILL what is left.  Fires when every process is gone.
        """
        self._stopping = True
        self._queued.clear()
        for slot in self._slots.values():
            if slot.restart is not None and slot.restart.active():
                slot.restart.cancel()
                slot.restart = None
        return self._stopAll(self.processes())

    def _stopAll(self, processes: list[IWorkerProcess]) -> Deferred[Any]:
        waits = []
        for process in processes:
            if process.state != STOPPED:
                self._retire(process)
                waits.append(process.ended)
        if not waits:
            return succeed(None)
        return DeferredList(waits)

    def stopNow(self) -> Deferred[Any]:
        """
        SIGKILL every worker at once (the master is failing); fires when
        they are all reaped.
        """
        self._stopping = True
        self._queued.clear()
        for slot in self._slots.values():
            if slot.restart is not None and slot.restart.active():
                slot.restart.cancel()
        processes = [p for p in self.processes() if p.state != STOPPED]
        for process in processes:
            process.stop(KILL)
        return DeferredList([p.ended for p in processes])

