"""
Why a worker process ends: the typed vocabulary the supervisor counts
restarts by, and that the log (field C{cause}), the metrics and the app's
master events (L{twisted_cluster.WorkerEvent}) name.
"""

from __future__ import annotations

from typing import TypeAlias

from constantly import ValueConstant, Values


class RestartCause(Values):
    """
    Why a worker was replaced; each one's value is how L{Supervisor.restarts},
    the log (field C{cause}) and the metrics name it.
    """

    CRASH = ValueConstant("crash")
    HANG = ValueConstant("hang")
    RECYCLE = ValueConstant("recycle")
    ROLLOUT = ValueConstant("rollout")
    STARTUP = ValueConstant("startup")
    KILLED = ValueConstant("kill")
    OOM = ValueConstant("oom")


class EndCause(Values):
    """
    Why a worker ended with no replacement.  A worker's exit cause (what
    L{IWorkerObserver} and the app's L{twisted_cluster.WorkerEvent} are
    told) is a L{RestartCause} or one of these; each one's value names it.
    """

    REMOVED = ValueConstant("removed")
    STOPPED = ValueConstant("stopped")


CRASH, HANG, RECYCLE, ROLLOUT, STARTUP = (
    RestartCause.CRASH, RestartCause.HANG, RestartCause.RECYCLE,
    RestartCause.ROLLOUT, RestartCause.STARTUP,
)

#: Why a worker drains or exits: a L{RestartCause} or an L{EndCause}.
ExitCause: TypeAlias = ValueConstant
