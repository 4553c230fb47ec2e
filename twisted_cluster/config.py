"""
The cluster's settings, as one frozen value that every part reads.
"""

from __future__ import annotations

import os

import attr

from twisted_cluster.backoff import Backoff, StartupPolicy
from twisted_cluster.listening import DEFAULT_BACKLOG
from twisted_cluster.privileges import Credentials


def defaultWorkers() -> int:
    """
    The default worker count: the CPUs this process may run on.
    """
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def defaultMaxWorkers() -> int:
    """
    The default ceiling on workers (C{--max-workers}): four per CPU, at
    least 16.  A typo in C{scale 10000} must not fork the machine to death.
    """
    return max(16, 4 * defaultWorkers())


@attr.s(frozen=True, auto_attribs=True)
class ClusterConfig:
    """
    Everything the master needs to run a cluster.

    @ivar workers: how many workers to keep running.
    @ivar maxWorkers: the most workers resizing (SIGTTIN, the control site)
        may reach.
    @ivar app: the C{--app} dotted name, or C{None} for the built-in page.
    @ivar listen: endpoint strings to listen on.
    @ivar gracePeriod: seconds a draining worker may take before SIGKILL.
    @ivar startTimeout: seconds a new worker may take to become ready.
    @ivar killTimeout: seconds between SIGTERM and SIGKILL for a hung worker.
    @ivar healthInterval: seconds between two health pings of a worker.
    @ivar healthTimeout: seconds a ping may go unanswered before the worker
        is declared hung.
    @ivar dispatch: the name of the dispatch policy (C{--dispatch}, see
        L{twisted_cluster.dispatch.POLICIES}).
    @ivar queueLimit: connections the master holds while no worker is ready;
        past it, new ones are closed (and counted).
    @ivar backlog: the length of each listening socket's queue in the
        kernel (C{--backlog}; see L{twisted_cluster.listening.ownsBacklog}).
    @ivar maxConnections: connections a worker may serve before it is
        recycled, plus up to 10% jitter (0: never).
    @ivar maxMemory: resident memory in MB past which a worker is recycled
        (0: never).
    @ivar backoff: the restart delays.
    @ivar startup: when failing start-ups stop the master.
    @ivar python: the interpreter that runs the workers.
    @ivar pythonPath: directories put first on the workers' C{PYTHONPATH},
        so that they import the app (L{twisted_cluster.testing} sets it).
    @ivar control: where the master serves its control site (status page,
        metrics, operations): a Twisted server endpoint string, C{"auto"}
        for a private UNIX socket, or C{None} for none (see
        L{twisted_cluster.control}).
    @ivar controlToken: the file a TCP control site writes its token to
        (C{--control-token}), or C{None} for
        L{twisted_cluster.control.defaultTokenPath}.
    @ivar controlTokenFrom: a file the operator made whose token a TCP
        control site wants instead of a new one (C{--control-token-from}).
    @ivar controlAuth: whether the control site checks who asks (the
        token over TCP, the peer's uid over UNIX sockets);
        C{--control-no-auth} turns it off.
    @ivar credentials: whom the workers run as (C{--user}/C{--group}), or
        C{None} for the master's own user.
    """

    workers: int = attr.ib(factory=defaultWorkers)
    maxWorkers: int = attr.ib(factory=lambda: defaultMaxWorkers())
    app: str | None = None
    listen: tuple[str, ...] = ("tcp:8080",)
    gracePeriod: float = 30.0
    startTimeout: float = 60.0
    killTimeout: float = 5.0
    healthInterval: float = 5.0
    healthTimeout: float = 10.0
    queueLimit: int = 1024
    backlog: int = DEFAULT_BACKLOG
    dispatch: str = "round-robin"
    maxConnections: int = 0
    maxMemory: float = 0
    backoff: Backoff = Backoff()
    startup: StartupPolicy = StartupPolicy()
    python: str = attr.ib(factory=lambda: __import__("sys").executable)
    pythonPath: tuple[str, ...] = ()
    control: str | None = None
    controlToken: str | None = None
    controlTokenFrom: str | None = None
    controlAuth: bool = True
    credentials: Credentials | None = None
