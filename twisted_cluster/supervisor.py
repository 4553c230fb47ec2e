"""
Keep the configured number of workers running.

The supervisor spawns workers, notices when they exit, restarts them with
exponential backoff, and tells a worker that cannot start (a bad C{--app})
from one that had bad luck.  It stops them gracefully: drain, wait for the
grace period, SIGKILL what is left.

It decides with the pure objects of L{twisted_cluster.backoff}, and acts
through L{WorkerProcess}: tests drive it with a fake process factory and a
L{Clock}.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import attr
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_cluster.config import ClusterConfig
from twisted_cluster.process import READY, STARTING, STOPPED, WorkerProcess

log = Logger()

#: Restart causes, as counted in L{Supervisor.restarts}.
CRASH, HANG, RECYCLE, ROLLOUT, STARTUP = "crash", "hang", "recycle", "rollout", "startup"


@attr.s(auto_attribs=True)
class _Slot:
    """
    One place in the pool: the process that fills it and its restart record.
    """

    workerId: int
    process: WorkerProcess | None = None
    failures: int = 0
    restart: Any = None
    restarts: int = 0


class Supervisor:
    """
    Runs C{config.workers} workers and replaces those that exit.

    @ivar restarts: restarts so far, by cause.
    @ivar everReady: whether any worker was ever ready.
    """

    def __init__(
        self,
        reactor: Any,
        config: ClusterConfig,
        makeProcess: Callable[[int], WorkerProcess],
        onFatal: Callable[[str], None],
    ) -> None:
        """
        @param makeProcess: builds (does not spawn) the process for a slot.
        @param onFatal: called once with one line when workers cannot start.
        """
        self._reactor = reactor
        self._config = config
        self._makeProcess = makeProcess
        self._onFatal = onFatal
        self._slots: dict[int, _Slot] = {}
        self._retired: set[WorkerProcess] = set()
        self._startupFailures = 0
        self._shownErrors: set[str] = set()
        self._stopping = False
        self._fatal = False
        self.everReady = False
        self.restarts: Counter[str] = Counter()

    # Queries

    def processes(self) -> list[WorkerProcess]:
        """
        Every live worker process, slot holders first, by worker id.
        """
        live = [s.process for _, s in sorted(self._slots.items()) if s.process]
        return live + sorted(self._retired - set(live), key=lambda p: p.workerId)

    def ready(self) -> list[WorkerProcess]:
        """
        The workers that may take connections now, by worker id.
        """
        return [p for p in self.processes() if p.state == READY]

    def slotRestarts(self, workerId: int) -> int:
        slot = self._slots.get(workerId)
        return slot.restarts if slot else 0

    # Actions

    def start(self) -> None:
        """
        Spawn the configured number of workers.
        """
        for workerId in range(1, self._config.workers + 1):
            self._slots[workerId] = _Slot(workerId)
            self._spawn(self._slots[workerId])

    def _spawn(self, slot: _Slot) -> WorkerProcess:
        slot.restart = None
        process = self._makeProcess(slot.workerId)
        slot.process = process
        process.spawn()
        log.info(
            "worker {worker_id} pid {pid} started",
            worker_id=slot.workerId,
            pid=process.pid,
        )
        timeout = self._reactor.callLater(
            self._config.startTimeout, self._startTimedOut, process
        )
        process.ended.addCallback(self._exited, process, timeout)
        return process

    def _startTimedOut(self, process: WorkerProcess) -> None:
        if process.state == STARTING:
            log.warn(
                "worker {worker_id} pid {pid} not ready after {timeout}s: killing it",
                worker_id=process.workerId,
                pid=process.pid,
                timeout=self._config.startTimeout,
            )
            self.terminate(process)

    def terminate(self, process: WorkerProcess) -> None:
        """
        SIGTERM C{process} now, SIGKILL it if it is still there after the
        kill timeout.  Used for workers that cannot drain (hung, stuck in
        start-up).
        """
        process.signal("TERM")
        self._reactor.callLater(self._config.killTimeout, process.signal, "KILL")

    def _exited(self, reason: Failure, process: WorkerProcess, timeout: Any) -> None:
        if timeout.active():
            timeout.cancel()
        how = process.exitDescription(reason)
        slot = self._slots.get(process.workerId)
        current = slot is not None and slot.process is process
        if current:
            assert slot is not None
            slot.process = None
        self._retired.discard(process)
        if self._stopping or self._fatal or not current:
            log.info(
                "worker {worker_id} pid {pid} exited: {how}",
                worker_id=process.workerId,
                pid=process.pid,
                how=how,
            )
            return
        assert slot is not None
        if process.readyAt is None:
            self._startFailed(slot, process, how)
            if self._fatal:
                return
            cause = STARTUP
        else:
            self._startupFailures = 0
            cause = getattr(process, "exitCause", None) or CRASH
        uptime = self._reactor.seconds() - process.startedAt
        slot.failures = self._config.backoff.failuresAfterExit(slot.failures, uptime)
        delay = self._config.backoff.delay(slot.failures)
        self.restarts[cause] += 1
        slot.restarts += 1
        log.warn(
            "worker {worker_id} pid {pid} exited ({how}, {cause}): restarting in {delay:.2f}s",
            worker_id=process.workerId,
            pid=process.pid,
            how=how,
            cause=cause,
            delay=delay,
        )
        slot.restart = self._reactor.callLater(delay, self._spawn, slot)

    def _startFailed(self, slot: _Slot, process: WorkerProcess, how: str) -> None:
        self._startupFailures += 1
        error = process.appError
        if error is not None and error not in self._shownErrors:
            self._shownErrors.add(error)
            log.error(
                "worker {worker_id} pid {pid} could not load the app: {error}\n{details}",
                worker_id=process.workerId,
                pid=process.pid,
                error=error,
                details=process.appErrorDetails,
            )
        verdict = self._config.startup.judge(
            self._startupFailures, self.everReady, error
        )
        if verdict.fatal:
            self._fatal = True
            self._onFatal(verdict.reason)

    def noteReady(self, process: WorkerProcess) -> None:
        """
        Record that C{process} is ready (called by the master).
        """
        self.everReady = True
        log.info(
            "worker {worker_id} pid {pid} ready",
            worker_id=process.workerId,
            pid=process.pid,
        )

    def stop(self) -> Deferred[Any]:
        """
        Stop every worker gracefully: drain, wait up to the grace period,
        then SIGKILL what is left.  Fires when every process is gone.
        """
        self._stopping = True
        for slot in self._slots.values():
            if slot.restart is not None and slot.restart.active():
                slot.restart.cancel()
                slot.restart = None
        return self._stopAll(self.processes())

    def _stopAll(self, processes: list[WorkerProcess]) -> Deferred[Any]:
        waits = []
        for process in processes:
            if process.state == STOPPED:
                continue
            if process.state == STARTING:
                self.terminate(process)
            else:
                process.drain()
            waits.append(process.ended)
        if not waits:
            return succeed(None)
        killer = self._reactor.callLater(
            self._config.gracePeriod, self._killAll, processes
        )
        done = DeferredList(waits)

        def cancelKiller(result: Any) -> Any:
            if killer.active():
                killer.cancel()
            return result

        return done.addBoth(cancelKiller)

    def _killAll(self, processes: list[WorkerProcess]) -> None:
        for process in processes:
            if process.state != STOPPED:
                log.warn(
                    "worker {worker_id} pid {pid} still running after the grace "
                    "period: killing it",
                    worker_id=process.workerId,
                    pid=process.pid,
                )
                process.signal("KILL")

    def stopNow(self) -> Deferred[Any]:
        """
        SIGKILL every worker at once (the master is failing); fires when
        they are all reaped.
        """
        self._stopping = True
        for slot in self._slots.values():
            if slot.restart is not None and slot.restart.active():
                slot.restart.cancel()
        processes = [p for p in self.processes() if p.state != STOPPED]
        for process in processes:
            process.signal("KILL")
        return DeferredList([p.ended for p in processes])

