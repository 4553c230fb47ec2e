"""
Recycling: replace a worker that served too many connections or grew too
big, gracefully (a new worker is ready before the old one drains), the same
way as one step of a rolling restart.

L{RecyclePolicy} holds the thresholds and decides; L{Recycler} reads the
figures of each health ping (L{twisted_cluster._supervision.health}) and asks the
supervisor for the replacement.
"""

from __future__ import annotations

import random
from typing import Any

import attr
from twisted.logger import Logger

from twisted_cluster import logevents
from twisted_cluster._supervision.causes import RECYCLE
from twisted_cluster._supervision.process import (
    READY,
    STARTING,
    IWorkerProcess,
    workerFields,
)

log = Logger()

#: Bytes in the megabyte of C{--max-memory}.
MB = 1024 * 1024


@attr.s(frozen=True, auto_attribs=True)
class RecyclePolicy:
    """
    When a worker is due for replacement.

    @ivar maxConnections: connections a worker may serve (0: no limit).
        Each worker gets its own limit, drawn between C{maxConnections} and
        C{maxConnections * (1 + jitter)}, so that workers started together
        are not all recycled together.
    @ivar jitter: the spread of the connection limits, as a fraction.
    @ivar maxMemory: resident memory, in MB, a worker may use (0: no
        limit).
    """

    maxConnections: int = 0
    maxMemory: float = 0
    jitter: float = 0.1

    @property
    def enabled(self) -> bool:
        return bool(self.maxConnections or self.maxMemory)

    def connectionLimit(self, rng: random.Random) -> int:
        """
        One worker's connection limit (0: none), with jitter from C{rng}.
        """
        if not self.maxConnections:
            return 0
        spread = int(self.maxConnections * self.jitter)
        return self.maxConnections + rng.randint(0, spread)

    def reason(
        self, served: int, rss: int, limit: int, checkMemory: bool = True
    ) -> str | None:
        """
        Why a worker that served C{served} connections, uses C{rss} bytes
        and has the connection limit C{limit} must be recycled, in words;
        C{None} when it may go on.

        @param checkMemory: whether the memory limit applies (see
            L{tooLowForAFreshWorker}).
        """
        if limit and served >= limit:
            return f"served {served} connections (limit {limit})"
        if checkMemory and self.maxMemory and rss >= self.maxMemory * MB:
            return f"uses {rss / MB:.0f} MB (limit {self.maxMemory:g} MB)"
        return None

    def tooLowForAFreshWorker(self, firstRSS: int) -> bool:
        """
        Whether the memory limit is below what a worker used at its first
        health ping: recycling for memory would then replace every worker
        forever, so it is turned off instead.
        """
        return bool(self.maxMemory) and firstRSS >= self.maxMemory * MB


class Recycler:
    """
    Checks each worker's figures after a health ping and asks the
    supervisor to replace the worker past a threshold.
    """

    def __init__(
        self, supervisor: Any, policy: RecyclePolicy, rng: random.Random | None = None
    ) -> None:
        """
        @param supervisor: gives C{replace(workerId, cause, process)} and
            C{canReplace(process)}.
        @param rng: draws the jittered connection limits.
        """
        self._supervisor = supervisor
        self._policy = policy
        self._rng = rng if rng is not None else random.Random()
        self._limits: dict[IWorkerProcess, int] = {}
        self._seen: set[IWorkerProcess] = set()
        self._checkMemory = True

    def limitOf(self, process: IWorkerProcess) -> int:
        """
        The connection limit of C{process} (drawn once per process).
        """
        if process not in self._limits:
            self._limits[process] = self._policy.connectionLimit(self._rng)
        return self._limits[process]

    def check(self, process: IWorkerProcess) -> None:
        """
        Recycle C{process} if its last figures are past a threshold.
        """
        if not self._policy.enabled or process.state != READY:
            return
        for gone in [p for p in self._limits if p.state not in (READY, STARTING)]:
            del self._limits[gone]
        self._seen = {p for p in self._seen if p.state in (READY, STARTING)}
        rss = process.figures.rss
        if process not in self._seen:
            self._seen.add(process)
            if self._checkMemory and self._policy.tooLowForAFreshWorker(rss):
                self._checkMemory = False
                log.error(
                    "worker {worker_id} pid {worker_pid} uses {rss} MB at start, more than "
                    "--max-memory {limit:g} MB: recycling for memory is off",
                    cluster_event=logevents.RECYCLE_MEMORY_OFF,
                    **workerFields(process),
                    rss=rss // MB,
                    limit=self._policy.maxMemory,
                )
        why = self._policy.reason(
            process.figures.served, rss, self.limitOf(process), self._checkMemory
        )
        if why is None or not self._supervisor.canReplace(process):
            return
        log.info(
            "worker {worker_id} pid {worker_pid} {why}: recycling it",
            cluster_event=logevents.WORKER_RECYCLING,
            **workerFields(process),
            why=why,
        )
        self._supervisor.replace(process.workerId, RECYCLE)
