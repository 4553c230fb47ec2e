"""
The cluster's settings, as one frozen value that every part reads.
"""

from __future__ import annotations

import os
import resource

import attr

from twisted_cluster._master.listening import DEFAULT_BACKLOG
from twisted_cluster._shared.privileges import Credentials
from twisted_cluster._supervision.backoff import Backoff, CrashGuard, StartupPolicy


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
    least 16, within what this process's limits allow (L{WorkerBound}).  A
    typo in C{scale 10000} must not fork the machine to death.
    """
    return WorkerBound.current().highest


#: Descriptors the master holds for each worker: its control and hand-off
#: sockets, and the pipes of its stdin, stdout, stderr, log and stacks.
FDS_PER_WORKER = 7

#: Descriptors the master keeps for itself (listening sockets, the control
#: site, its log, connections in flight) when it bounds the workers by its
#: open-file limit.
FDS_RESERVED = 64


def _softLimit(which: int) -> int | None:
    soft, _ = resource.getrlimit(which)
    return None if soft == resource.RLIM_INFINITY else soft


@attr.s(frozen=True, auto_attribs=True)
class WorkerBound:
    """
    How many workers this master may run: a bound checked before anything
    starts, so that C{--workers 100000} is one clear error rather than a
    fork storm.

    Two bounds, and the lower one applies:
      - C{perCPU}: four workers per CPU, at least 16.  More workers than
        that only share the same cores (each costs a Python process and its
        app's memory); C{--allow-many-workers} lifts this bound.
      - C{resources}: what the limits of this process allow.  Every worker
        costs the master L{FDS_PER_WORKER} descriptors under
        C{RLIMIT_NOFILE} (after L{FDS_RESERVED} for itself), and one
        process under C{RLIMIT_NPROC}, of which the workers may take half
        (not enforced for root).  Past this bound forks and socketpairs
        fail, so no option lifts it: raise the limit (C{ulimit -n},
        C{ulimit -u}) instead.

    @ivar cpus: the CPUs this process may run on.
    @ivar nofile: the soft C{RLIMIT_NOFILE}, C{None} when unlimited.
    @ivar nproc: the soft C{RLIMIT_NPROC}, C{None} when unlimited or not
        enforced (root).
    """

    cpus: int
    nofile: int | None = None
    nproc: int | None = None

    @classmethod
    def current(cls) -> "WorkerBound":
        """
        The bound of this process, from its CPU affinity and its limits.
        """
        return cls(
            cpus=defaultWorkers(),
            nofile=_softLimit(resource.RLIMIT_NOFILE),
            nproc=None if os.geteuid() == 0 else _softLimit(resource.RLIMIT_NPROC),
        )

    @property
    def perCPU(self) -> int:
        """
        The bound by CPUs: four per CPU, at least 16.
        """
        return max(16, 4 * self.cpus)

    @property
    def resources(self) -> int | None:
        """
        The bound by this process's limits (at least 1), C{None} when
        unlimited.
        """
        bounds = []
        if self.nofile is not None:
            bounds.append((self.nofile - FDS_RESERVED) // FDS_PER_WORKER)
        if self.nproc is not None:
            bounds.append(self.nproc // 2)
        return max(1, min(bounds)) if bounds else None

    @property
    def highest(self) -> int:
        """
        The most workers allowed without C{--allow-many-workers}.
        """
        return min(self.perCPU, self.resources or self.perCPU)

    def refusal(self, option: str, count: int, allowMany: bool = False) -> str | None:
        """
        Why C{count} workers (asked by C{option}) are too many, in one line,
        or C{None} when they are allowed.
        """
        if not allowMany and count > self.perCPU:
            return (
                f"{option} {count} is more than {self.perCPU} (4 per CPU, at least "
                f"16, on {self.cpus} CPUs); pass --allow-many-workers to run more"
            )
        resources = self.resources
        if resources is not None and count > resources:
            return (
                f"{option} {count} is more than the {resources} workers this "
                f"process's limits allow (open files: {self.nofile or 'unlimited'}, "
                f"{FDS_PER_WORKER} per worker; processes: {self.nproc or 'unlimited'}, "
                f"half for workers); raise them with ulimit -n / ulimit -u"
            )
        return None


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
    @ivar killTimeout: seconds between SIGTERM and SIGKILL for a worker that
        cannot drain (one that does not become ready in time).
    @ivar healthInterval: seconds between two health pings of a worker.
    @ivar healthTimeout: seconds a ping may go unanswered before the worker
        is declared hung.
    @ivar dispatch: the name of the dispatch policy (C{--dispatch}, see
        L{twisted_cluster._master.dispatch.POLICIES}).
    @ivar queueLimit: connections the master holds while no worker is ready;
        past it, new ones are closed (and counted).
    @ivar workerConnections: the most connections open in one worker at a
        time (C{--worker-connections}); a worker at it gets none while
        another has room, and they wait in the master when none has (0: no
        cap).
    @ivar backlog: the length of each listening socket's queue in the
        kernel (C{--backlog}; see L{twisted_cluster._master.listening.ownsBacklog}).
    @ivar maxConnections: connections a worker may serve before it is
        recycled, plus up to 10% jitter (0: never).
    @ivar maxMemory: resident memory in MB past which a worker is recycled
        (0: never).
    @ivar backoff: the delays between start-up attempts of a slot whose
        workers cannot start.
    @ivar crashGuard: when a worker that crashed while serving is restarted.
    @ivar startConcurrency: the most workers starting (spawned, not ready
        yet) at a time; the others wait their turn (default: the CPUs).
    @ivar startup: when failing start-ups stop the master.
    @ivar python: the interpreter that runs the workers.
    @ivar pythonPath: directories put first on the workers' C{PYTHONPATH},
        so that they import the app (L{twisted_cluster.testing} sets it).
    @ivar control: where the master serves its control site (status page,
        metrics, operations): a Twisted server endpoint string, C{"auto"}
        for a private UNIX socket, or C{None} for none (see
        L{twisted_cluster._control.site}).
    @ivar controlToken: the file a TCP control site writes its token to
        (C{--control-token}), or C{None} for
        L{twisted_cluster._control.site.defaultTokenPath}.
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
    workerConnections: int = 0
    backlog: int = DEFAULT_BACKLOG
    dispatch: str = "round-robin"
    maxConnections: int = 0
    maxMemory: float = 0
    backoff: Backoff = Backoff()
    crashGuard: CrashGuard = CrashGuard()
    startConcurrency: int = attr.ib(factory=defaultWorkers)
    startup: StartupPolicy = StartupPolicy()
    python: str = attr.ib(factory=lambda: __import__("sys").executable)
    pythonPath: tuple[str, ...] = ()
    control: str | None = None
    controlToken: str | None = None
    controlTokenFrom: str | None = None
    controlAuth: bool = True
    credentials: Credentials | None = None
