"""
Rolling restart: replace every worker, one at a time, each new worker ready
before the old one drains, so that the cluster never serves with fewer
workers than it has and a deploy picks up new code with no failed request.

L{RolloutPlan} decides the order (pure, keyed by pid); L{RollingRestart}
drives the supervisor through it.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twisted_cluster import logevents
from twisted_cluster._supervision.causes import ROLLOUT
from twisted_cluster._supervision.startfailure import StartFailure

log = Logger()


def _why(failure: StartFailure | None) -> str:
    """
    How the new worker failed, for the text of the abort line:
    C{" (exit 3 at app.py:12: NameError: name 'x' is not defined)"}.
    """
    if failure is None:
        return ""
    where = f" at {failure.file}:{failure.line}: {failure.exception}" if failure.file else ""
    return f" ({failure.how}{where})"


class RolloutPlan:
    """
    Which worker to replace next.

    A roll-out replaces every process that was running when it was
    requested ("stale" processes, by pid).  A process started since then (a
    crash restart, an earlier step) already runs the new code and is
    skipped.  A second request during a roll-out marks the processes running
    at that moment stale too, so that they are rolled again.
    """

    def __init__(self) -> None:
        self._stale: set[int] = set()

    @property
    def active(self) -> bool:
        """
        Whether some process is still to be replaced.
        """
        return bool(self._stale)

    def request(self, current: Mapping[int, int | None]) -> None:
        """
        Mark every running process stale.

        @param current: worker id -> pid of the process in that slot (C{None}:
            the slot is waiting for a restart).
        """
        self._stale.update(pid for pid in current.values() if pid is not None)

    def next(self, current: Mapping[int, int | None]) -> int | None:
        """
        The worker id to replace next (lowest id first), or C{None} when the
        roll-out is complete.  Stale pids no longer running are forgotten.
        """
        running = {pid for pid in current.values() if pid is not None}
        self._stale &= running
        for workerId in sorted(current):
            if current[workerId] in self._stale:
                return workerId
        return None

    def done(self, pid: int) -> None:
        """
        The process C{pid} was replaced.
        """
        self._stale.discard(pid)

    def abort(self) -> None:
        """
        Give up the roll-out: nothing is stale any more.
        """
        self._stale.clear()


class RollingRestart:
    """
    Runs roll-outs on a supervisor, one step at a time.
    """

    def __init__(self, supervisor: Any) -> None:
        """
        @param supervisor: gives C{slotPids()}, C{replace(workerId, cause)},
            C{replacementFailure(workerId)} and C{stopping}.
        """
        self._supervisor = supervisor
        self._plan = RolloutPlan()
        self._waiters: list[Deferred[bool]] = []
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def request(self) -> Deferred[bool]:
        """
        Replace every worker running now.  Fires with C{True} once they all
        are replaced, C{False} when the roll-out was aborted (a new worker
        failed to start, or the cluster is stopping).
        """
        d: Deferred[bool] = Deferred()
        self._waiters.append(d)
        self._plan.request(self._supervisor.slotPids())
        if not self._running:
            self._running = True
            log.info(
                "rolling restart: replacing workers one at a time; to replace: {count}",
                cluster_event=logevents.ROLLOUT_STARTED,
                count=sum(1 for p in self._supervisor.slotPids().values() if p),
            )
            self._step(0)
        return d

    def _step(self, replaced: int) -> None:
        supervisor = self._supervisor
        if supervisor.stopping:
            self._finish(False)
            return
        current = supervisor.slotPids()
        workerId = self._plan.next(current)
        if workerId is None:
            log.info("rolling restart done; workers replaced: {count}",
                     cluster_event=logevents.ROLLOUT_DONE, count=replaced)
            self._finish(True)
            return
        pid = current[workerId]
        log.info(
            "rolling restart: starting a new worker {worker_id} to replace pid {worker_pid}",
            cluster_event=logevents.ROLLOUT_STEP,
            worker_id=workerId,
            worker_pid=pid,
        )

        def stepped(ok: bool) -> None:
            if ok:
                self._plan.done(pid)
                self._step(replaced + 1)
            elif supervisor.stopping:
                self._finish(False)
            elif workerId not in supervisor.slotPids():
                # The slot was removed (SIGTTOU) meanwhile: nothing to roll.
                self._step(replaced)
            else:
                failure = supervisor.replacementFailure(workerId)
                log.error(
                    "rolling restart aborted: the new worker {worker_id} failed to "
                    "start{why}; the old workers keep serving",
                    cluster_event=logevents.ROLLOUT_ABORTED,
                    worker_id=workerId,
                    why=_why(failure),
                    **(failure.fields() if failure is not None else {}),
                )
                self._finish(False)

        supervisor.replace(workerId, ROLLOUT).addCallback(stepped)

    def _finish(self, ok: bool) -> None:
        self._plan.abort()
        self._running = False
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(ok)
