"""
What each operation of the control site does to the cluster: the C{POST}
endpoints that C{ctl} and the status page's buttons call.

    POST /restart              rolling restart of every worker
    POST /restart?worker=ID    replace worker ID (new one ready, then it drains)
    POST /add                  one worker more
    POST /remove               drain the worker with the highest id, one less
    POST /drain?worker=ID      drain worker ID, one less
    POST /kill?worker=ID       SIGKILL worker ID; its slot restarts
    POST /scale?workers=N      add or remove workers until N are wanted
    POST /shutdown[?now=1]     stop the master (now: kill the workers first)

Each one either runs, or raises L{OperationRefused} with the reason the
master has (logged once, by whoever refused), or L{BadArguments} for a
request that does not say what it wants.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.web.server import Request

from twisted_cluster import logevents
from twisted_cluster._supervision.interfaces import IWorkerOperations
from twisted_cluster._supervision.refusal import OperationRefused, RefusalReason, refuse


class BadArguments(ValueError):
    """
    The request's arguments are missing or malformed; C{str()} says what
    the operation needs, in one line.
    """


def _argument(request: Request, name: str) -> str | None:
    values = request.args.get(name.encode()) if request.args else None
    return values[0].decode("ascii", "replace") if values else None


def _number(request: Request, name: str, needs: str) -> int | None:
    """
    The whole-number argument C{name} of C{request}, or C{None} when
    absent.

    @raise BadArguments: when it is not a whole number.
    """
    value = _argument(request, name)
    if value is None:
        return None
    # Digits only: int() would also take "+1", " 1 " and "1_0" (ten).
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise BadArguments(needs)
    return int(value)


def _workerId(request: Request, operation: str) -> int:
    needs = f"{operation} needs worker=ID, the id of a worker"
    workerId = _number(request, "worker", needs)
    if workerId is None:
        raise BadArguments(needs)
    return workerId


def _pool(service: Any, operation: str) -> IWorkerOperations:
    """
    The supervisor of C{service}, which does and refuses the operations on
    workers.
    """
    supervisor = service.supervisor
    if supervisor is None:
        raise OperationRefused(
            operation, RefusalReason.NOT_RUNNING, "the cluster has not started its workers"
        )
    pool: IWorkerOperations = supervisor
    return pool


def _method(service: Any, name: str) -> Callable[..., Any]:
    method = getattr(service, name, None)
    if method is None:
        raise NotImplementedError(f"this master has no {name} operation")
    result: Callable[..., Any] = method
    return result


def _restart(service: Any, request: Request) -> Any:
    if _argument(request, "worker") is not None:
        return _pool(service, "restart").restart(_workerId(request, "restart"))
    rollingRestart = _method(service, "rollingRestart")
    if service.stopping:
        raise refuse("restart", RefusalReason.STOPPING, "the cluster is stopping",
                     cluster_event=logevents.RESTART_REFUSED)
    return rollingRestart()


def _scale(service: Any, request: Request) -> int:
    needs = "scale needs workers=N, a whole number >= 1"
    wanted = _number(request, "workers", needs)
    if wanted is None or wanted < 1:
        raise BadArguments(needs)
    return _pool(service, "scale").scale(wanted)


def _shutdown(service: Any, request: Request) -> Any:
    now = (_argument(request, "now") or "0").lower() in ("1", "true", "yes")
    return _method(service, "shutdown")(now=now)


def operations(service: Any) -> dict[bytes, Callable[[Request], Any]]:
    """
    The operations of C{service}'s control site, by path segment: each
    takes the request and returns its result (a L{Deferred} for the long
    ones), or raises.
    """
    return {
        b"restart": lambda request: _restart(service, request),
        b"add": lambda request: _pool(service, "add").add(),
        b"remove": lambda request: _pool(service, "remove").remove(),
        b"drain": lambda request: _pool(service, "drain").remove(
            _workerId(request, "drain")
        ),
        b"kill": lambda request: _pool(service, "kill").kill(_workerId(request, "kill")),
        b"scale": lambda request: _scale(service, request),
        b"shutdown": lambda request: _shutdown(service, request),
    }
