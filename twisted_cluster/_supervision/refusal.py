"""
Why the master refuses an operation on its workers (add, remove, drain,
kill, restart, scale, shutdown): one reason, named, that the control site
passes on to C{ctl} and the master logs once.
"""

from __future__ import annotations

from constantly import ValueConstant, Values
from twisted.logger import Logger

log = Logger()


class RefusalReason(Values):
    """
    The reasons an operation is refused; each one's value is the C{reason}
    field of the refusal's log event and of the control site's answer.
    """

    #: The cluster is stopping (or gave up): it takes no new work.
    STOPPING = ValueConstant("stopping")
    #: The cluster has not started its workers yet.
    NOT_RUNNING = ValueConstant("not_running")
    #: Removing or draining it would leave no worker.
    LAST_WORKER = ValueConstant("last_worker")
    #: C{--max-workers} workers run already, or would be passed.
    MAX_WORKERS = ValueConstant("max_workers")
    #: No worker has that id.
    NO_SUCH_WORKER = ValueConstant("no_such_worker")
    #: The slot has no process now: it waits for its restart.
    RESTARTING = ValueConstant("restarting")


class OperationRefused(Exception):
    """
    An operation the master will not do; C{str()} is one line that says
    which and why (C{"drain 3 refused: no worker 3 (workers: 1, 2)"}).

    @ivar operation: the operation's name (C{"drain"}).
    @ivar reason: a L{RefusalReason}.
    @ivar workerId: the worker it was about, if any.
    """

    def __init__(
        self, operation: str, reason: ValueConstant, why: str, workerId: int | None = None
    ) -> None:
        target = f" {workerId}" if workerId is not None else ""
        super().__init__(f"{operation}{target} refused: {why}")
        self.operation = operation
        self.reason = reason
        self.why = why
        self.workerId = workerId


def refuse(
    operation: str,
    reason: ValueConstant,
    why: str,
    *,
    cluster_event: str,
    workerId: int | None = None,
    **fields: object,
) -> OperationRefused:
    """
    Log the refusal of C{operation} once, with its C{reason} and the
    C{cluster_event} key given, and return the exception to raise.
    """
    refusal = OperationRefused(operation, reason, why, workerId)
    log.warn(
        "{refusal}",
        refusal=str(refusal),
        cluster_event=cluster_event,
        operation=operation,
        reason=reason.value,
        worker_id=workerId,
        **fields,
    )
    return refusal
