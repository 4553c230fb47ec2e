"""
C{twist cluster} / C{twistd cluster}: the command line.

This is the one place that picks the real reactor, installs signal
handlers and decides the process's exit status; everything below it takes
the reactor as an argument.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import signal
import sys
from typing import Any, Callable, NoReturn, cast

from twisted.logger import Logger
from twisted.python import usage

from twisted_cluster._control.site import ControlError, controlPlane
from twisted_cluster._master.config import ClusterConfig, WorkerBound, defaultWorkers
from twisted_cluster._master.dispatch import POLICIES
from twisted_cluster._master.handover import HandoverError, takeHandover
from twisted_cluster._master.listening import DEFAULT_BACKLOG, ListenError
from twisted_cluster._master.logreopen import LogReopener, logDescriptor, logFilePath
from twisted_cluster._master.pidfile import PIDFile, PIDFileError
from twisted_cluster._master.reload import appDirectories, startReloading
from twisted_cluster._master.service import ClusterService, MasterReactor
from twisted_cluster._master.signals import StopSignals, installSignals
from twisted_cluster._master.succession import Successor
from twisted_cluster._master.upgrade import EXTRA_TIME, MasterUpgrade
from twisted_cluster._shared.privileges import (
    PrivilegeError,
    checkCanSwitch,
    resolveCredentials,
)
from twisted_cluster._shared.scheduling import yieldToWorkers
from twisted_cluster.apploading import AppLoadError, checkApp, resolveName
from twisted_cluster.clusterapp import ClusterApp

log = Logger()

#: Exit status when the cluster could not start or had to give up.
EXIT_FAILURE = 1


def die(message: str) -> NoReturn:
    """
    Stop with one clear line on stderr and a non-zero exit: bad input never
    shows a traceback.
    """
    raise SystemExit(f"twist cluster: error: {message}")


def _number(kind: Callable[[str], Any], name: str, minimum: float) -> Callable[[str], Any]:
    def coerce(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            number = None
        # float() accepts "nan" and "inf": neither is a usable setting.
        if number is None or not math.isfinite(number) or number < minimum:
            what = "a whole number" if kind is int else "a number"
            die(f"--{name} must be {what} >= {minimum:g}, not {value!r}")
        return number

    coerce.coerceDoc = ""  # type: ignore[attr-defined]
    return coerce


def _policyName(value: str) -> str:
    if value not in POLICIES:
        die(f"--dispatch must be one of {', '.join(POLICIES)}, not {value!r}")
    return value


_policyName.coerceDoc = ""  # type: ignore[attr-defined]


class Options(usage.Options):
    """
    The options of C{twist cluster}.
    """

    synopsis = "[options]"
    longdesc = (
        "Run a cluster: one master process owns the listening sockets and "
        "hands each accepted connection, round-robin, to one of N worker "
        "processes that serve --app.  Without --app, workers serve a page "
        "that shows the cluster.  Signals: TERM/INT stop gracefully, QUIT "
        "stops at once, HUP restarts the workers one at a time, USR1 reopens "
        "the log file, USR2 upgrades the master itself, TTIN adds a worker, "
        "TTOU removes one, WINCH is ignored (see docs/operations.md)."
    )

    optParameters = [
        ["workers", "w", None, "Worker processes to run (default: the number of CPUs).",
         _number(int, "workers", 1)],
        ["max-workers", None, None,
         "The most workers SIGTTIN and the control site's add/scale may reach "
         "(default: 4 per CPU, at least 16).",
         _number(int, "max-workers", 1)],
        ["app", "a", None,
         "The app, as a dotted name: an IResource, an IProtocolFactory, or a "
         "callable returning one (module.attr or module:attr).  Default: a "
         "built-in page that shows the cluster."],
        ["grace-period", None, 30.0,
         "Seconds workers may take to finish in-flight work when stopping.",
         _number(float, "grace-period", 0)],
        ["start-timeout", None, 60.0,
         "Seconds a new worker may take to load the app and become ready.",
         _number(float, "start-timeout", 0.1)],
        ["queue-limit", None, 1024,
         "Connections held by the master while no worker is ready; past it, "
         "new ones are closed and counted.",
         _number(int, "queue-limit", 0)],
        ["worker-connections", None, 0,
         "The most connections open in one worker at a time: a worker with "
         "that many gets no new ones while another has room; when every one "
         "is full, they wait in the master (up to --queue-limit); 0: no cap.",
         _number(int, "worker-connections", 0)],
        ["backlog", None, DEFAULT_BACKLOG,
         "Connections the kernel queues on each listening socket before the "
         "master accepts them (capped by net.core.somaxconn); an endpoint's "
         "own backlog= wins, and systemd sockets keep their unit's.",
         _number(int, "backlog", 1)],
        ["dispatch", None, "round-robin",
         "Which worker gets each connection: round-robin (each in turn), "
         "least-connections (the fewest open connections; for long-lived "
         "ones), shared (every worker accepts and the kernel balances), or "
         "sticky (a client IP stays on one worker while it lives).",
         _policyName],
        ["health-interval", None, 5.0,
         "Seconds between two health pings of each worker.",
         _number(float, "health-interval", 0.01)],
        ["health-timeout", None, 10.0,
         "Seconds a worker may leave a ping unanswered before it is killed "
         "(its Python stacks logged, then KILL) and replaced as hung.",
         _number(float, "health-timeout", 0.01)],
        ["max-connections", None, 0,
         "Recycle a worker (replace it gracefully) after it served this many "
         "connections, plus up to 10% random jitter; 0: never.",
         _number(int, "max-connections", 0)],
        ["max-memory", None, 0.0,
         "Recycle a worker whose resident memory exceeds this many MB; 0: never.",
         _number(float, "max-memory", 0)],
        ["control", None, "auto",
         "Where the master serves its control site (status page, /status.json, "
         "/metrics, operations): a Twisted server endpoint string such as "
         "tcp:9100:interface=127.0.0.1, 'auto' for a private UNIX socket "
         "(mode 0600) in $XDG_RUNTIME_DIR/twisted-cluster or "
         "/tmp/twisted-cluster-UID, named MASTERPID.sock, or 'none'.  Over TCP "
         "every client but /healthz and /readyz must send the token from "
         "--control-token's file; over UNIX sockets only the master's user "
         "and root get in."],
        ["control-token", None, None,
         "The file a TCP control site writes its random token to (mode 0600, "
         "removed at stop; default: tcp-PORT.token in the control socket "
         "directory, where python -m twisted_cluster.ctl finds it)."],
        ["control-token-from", None, None,
         "Use the token in this file, which you made (owned by you or root, "
         "not writable by others, e.g. mode 0640 with Prometheus's group), "
         "instead of writing a new one at every start."],
        ["user", None, None,
         "Run the workers as this user (name or uid); the master stays the "
         "user it was started as (root, to bind ports below 1024 and read TLS "
         "keys) and never runs the app."],
        ["group", None, None,
         "Run the workers with this group (name or gid; default: the --user's "
         "primary group)."],
        ["pidfile", None, None,
         "Write the master's pid to this file while it runs; refuse to start "
         "while another live master holds it."],
    ]

    optFlags = [
        ["reload", None,
         "For development: roll the workers (as SIGHUP does) whenever a source "
         "file of the app changes.  Not for production."],
        ["control-no-auth", None,
         "Let every client that can connect use the control site: no token over "
         "TCP, no peer uid check on UNIX sockets.  Any local user (and the "
         "workers' code) can then restart and resize the cluster."],
        ["allow-many-workers", None,
         "Allow --workers and --max-workers past 4 per CPU (at least 16).  "
         "The bound set by this process's open-file and process limits "
         "still applies (see docs/operations.md, Restart rules)."],
        ["master-normal-priority", None,
         "Keep the master in the scheduler's normal class.  By default it "
         "runs as SCHED_BATCH (its workers stay normal), so that on busy "
         "cores it does not preempt them and accepts connections in batches; "
         "on idle cores it runs at once (see docs/performance.md)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        # usage.Options wraps an opt_ method's docstring as it is: join its
        # lines, so that their indentation does not show up in --help.
        self.docs = {
            name: re.sub(r"\s*\n\s*", " ", doc.strip()) if doc else doc
            for name, doc in self.docs.items()
        }

    def opt_listen(self, description: str) -> None:
        """
        Where to listen: a Twisted server endpoint string (tcp:8080,
        tcp6:8080, unix:/path/app.sock, ssl:443:privateKey=key.pem:certKey=cert.pem
        (TLS, done by the workers), haproxy:tcp:8080 (behind a proxy that sends
        the PROXY protocol), systemd:domain=INET:index=0 (socket activation),
        ...).  Repeatable.  Default: tcp:8080.
        """
        self["listen"].append(description)

    opt_l = opt_listen


    def postOptions(self) -> None:
        self._checkWorkers(WorkerBound.current())
        if self["worker-connections"] and self["dispatch"] == "shared":
            die("--worker-connections needs a --dispatch where the master hands out "
                "connections: with shared, the kernel does")
        if not self["listen"]:
            self["listen"] = ["tcp:8080"]
        try:
            self["credentials"] = resolveCredentials(self["user"], self["group"])
            checkCanSwitch(self["credentials"])
        except PrivilegeError as e:
            die(str(e))

    def _checkWorkers(self, bound: WorkerBound) -> None:
        """
        Settle C{--workers} and C{--max-workers} within C{bound}: a count
        past it stops here, before any process starts, with one line.
        """
        allowMany = bool(self["allow-many-workers"])
        if self["workers"] is None:
            self["workers"] = min(defaultWorkers(), bound.highest)
        for option in ("workers", "max-workers"):
            if self[option] is not None:
                refusal = bound.refusal(f"--{option}", self[option], allowMany)
                if refusal is not None:
                    die(refusal)
        if self["max-workers"] is None:
            self["max-workers"] = max(bound.highest, self["workers"])
        if self["workers"] > self["max-workers"]:
            die(f"--workers {self['workers']} is more than --max-workers {self['max-workers']}")

    def config(self) -> ClusterConfig:
        """
        The cluster configuration these options describe.
        """
        return ClusterConfig(
            workers=self["workers"],
            maxWorkers=self["max-workers"],
            app=self["app"],
            listen=tuple(self["listen"]),
            gracePeriod=self["grace-period"],
            startTimeout=self["start-timeout"],
            queueLimit=self["queue-limit"],
            workerConnections=self["worker-connections"],
            backlog=self["backlog"],
            dispatch=self["dispatch"],
            healthInterval=self["health-interval"],
            healthTimeout=self["health-timeout"],
            maxConnections=self["max-connections"],
            maxMemory=self["max-memory"],
            credentials=self["credentials"],
            control=None if self["control"] == "none" else self["control"],
            controlToken=(
                os.path.abspath(self["control-token"]) if self["control-token"] else None
            ),
            controlTokenFrom=(
                os.path.abspath(self["control-token-from"])
                if self["control-token-from"] else None
            ),
            controlAuth=not self["control-no-auth"],
        )


class CommandLineService(ClusterService):
    """
    The cluster as run by C{twist}: a port that cannot be bound ends the
    process with one line instead of a traceback.

    @ivar pidfile: the C{--pidfile}, written before binding (after
        C{twistd} daemonized) and removed once every worker is gone.
    """

    pidfile: PIDFile | None = None
    #: The new master's half of an upgrade (SIGUSR2), when this master was
    #: started by one: told why when the start fails.
    successor: Successor | None = None

    def privilegedStartService(self) -> None:
        try:
            if self.pidfile is not None:
                self.pidfile.acquire()
            super().privilegedStartService()
        except (ListenError, PIDFileError) as e:
            if self.successor is not None:
                self.successor.reportFailure(str(e))
            die(str(e))

    def stopService(self) -> Any:
        stopped = super().stopService()
        if self.pidfile is not None:
            stopped.addBoth(_releasing, self.pidfile)
        return stopped


def _releasing(result: Any, pidfile: PIDFile) -> Any:
    pidfile.release()
    return result


class _Exit:
    """
    Makes the process exit non-zero after a fatal error, once the reactor
    and twist have finished their own clean-up.
    """

    def __init__(self) -> None:
        self.status = 0
        atexit.register(self._atExit)

    def _atExit(self) -> None:
        if self.status:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(self.status)


def makeService(options: Options) -> ClusterService:
    """
    Build the cluster service from parsed options; check everything that can
    be checked before any process starts.  A master started by an upgrade
    (SIGUSR2, L{twisted_cluster._master.upgrade}) adopts the old master's
    sockets and tells it whether it could start.
    """
    from twisted.internet import reactor as globalReactor

    # The platform's default reactor provides all the master needs.
    reactor = cast(MasterReactor, globalReactor)

    try:
        handover = takeHandover(os.environ, os.getppid())
    except HandoverError as e:
        die(str(e))
    successor = None if handover is None else Successor(reactor, handover)
    try:
        return _makeService(reactor, options, successor)
    except SystemExit as e:
        if successor is not None:
            successor.reportFailure(str(e.code))
        raise


def _makeService(
    reactor: MasterReactor, options: Options, successor: Successor | None
) -> ClusterService:
    """
    L{makeService}, for a first master or the new one of an upgrade.
    """
    config = options.config()
    loaded: set[str] = set(sys.modules)
    appLocator = None
    if config.app is not None:
        # Importing the app here fails fast and clearly on a wrong name; the
        # workers import it again, afresh, at every start.
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        try:
            obj = resolveName(config.app)
            checkApp(obj, config.app)
        except AppLoadError as e:
            if e.details:
                sys.stderr.write(e.details)
            die(str(e))
    try:
        control = controlPlane(reactor, config.control)
    except ControlError as e:
        die(str(e))
    exit = _Exit()

    def fatal(reason: str) -> None:
        exit.status = EXIT_FAILURE
        if successor is not None:
            successor.reportFailure(reason)
        # twist sends sys.stderr to the log by now: write to the real one.
        os.write(2, f"twist cluster: error: {reason}\n".encode())
        if reactor.running:
            reactor.stop()

    masterEvents = None
    if config.app is not None and isinstance(obj, ClusterApp):
        appLocator = obj.masterResponders
        masterEvents = obj.masterEvents
    try:
        service = CommandLineService(
            reactor, config, onFatal=fatal, appLocator=appLocator,
            controlPlane=control,
            masterEvents=masterEvents,
        )
    except Exception as e:
        die(f"cannot load app {config.app!r}: its masterResponders or "
            f"masterEvents raised {type(e).__name__}: {e}")
    service.requestStop = reactor.stop
    if options["pidfile"]:
        service.pidfile = PIDFile(os.path.abspath(options["pidfile"]))
        # Registered after _Exit's hook, so it runs before that one exits.
        atexit.register(service.pidfile.release)
    if successor is not None:
        successor.prepare(service)
        service.successor = successor
    try:
        service.checkConfig()
    except ListenError as e:
        die(str(e))
    if not options["master-normal-priority"]:
        service.workerPolicy = yieldToWorkers()
        if successor is not None and successor.workerPolicy is not None:
            # Started by a master that yielded already: its workers' policy.
            service.workerPolicy = successor.workerPolicy
    upgrade = MasterUpgrade(
        reactor, service, [sys.executable, *sys.orig_argv[1:]], os.getcwd(),
        onHandedOver=reactor.stop, pidfile=service.pidfile,
        timeout=config.startTimeout + EXTRA_TIME, successor=successor,
    )
    watched = appDirectories(sys.modules, loaded) if options["reload"] else None
    logPath = logFilePath(options.parent)
    reactor.callWhenRunning(
        _running, reactor, service, upgrade, successor, watched, logPath
    )
    return service


def _running(
    reactor: MasterReactor,
    service: ClusterService,
    upgrade: MasterUpgrade,
    successor: Successor | None,
    watched: list[str] | None,
    logPath: str | None,
) -> None:
    """
    Once the reactor runs: the signal handlers (over the reactor's own,
    so that a graceful stop exits 0), the log file to reopen (twistd opens
    it only now), the upgrade's report, and C{--reload}'s watch.
    """
    fd = None if logPath is None else logDescriptor(logPath)
    reopener = None if fd is None or logPath is None else LogReopener(logPath, fd)

    def reopenLogs() -> None:
        if reopener is not None:
            reopener.reopen()
        else:
            log.info("SIGUSR1: no log file to reopen (the log is not a file: "
                     "see twist --log-file)", log_file=logPath)
        service.reopenLogs()

    def killWorkers() -> Any:
        upgrade.stopNow()
        return service.supervisor.stopNow() if service.supervisor is not None else None

    def stop() -> None:
        if not upgrade.stopping():
            reactor.stop()

    stopSignals = StopSignals(reactor, stop, killWorkers)
    upgrade.onStopCancelled = stopSignals.rearm
    installSignals(
        reactor,
        stopSignals,
        {
            signal.SIGHUP: service.rollingRestart,
            signal.SIGTTIN: service.addWorker,
            signal.SIGTTOU: service.removeWorker,
            signal.SIGUSR1: reopenLogs,
            signal.SIGUSR2: upgrade.request,
        },
    )
    if successor is not None:
        successor.start(service)
    if watched is not None:
        startReloading(reactor, service.rollingRestart, watched)

