"""
C{twist cluster} / C{twistd cluster}: the command line.

This is the one place that picks the real reactor, installs signal
handlers and decides the process's exit status; everything below it takes
the reactor as an argument.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from typing import Any, Callable, NoReturn

from twisted.python import usage

from twisted_cluster.apploading import AppLoadError, checkApp, resolveName
from twisted_cluster.config import ClusterConfig, defaultWorkers
from twisted_cluster.listening import ListenError
from twisted_cluster.master import ClusterService

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
        if number is None or number < minimum:
            what = "a whole number" if kind is int else "a number"
            die(f"--{name} must be {what} >= {minimum:g}, not {value!r}")
        return number

    coerce.coerceDoc = ""  # type: ignore[attr-defined]
    return coerce


class Options(usage.Options):
    """
    The options of C{twist cluster}.
    """

    synopsis = "[options]"
    longdesc = (
        "Run a cluster: one master process owns the listening sockets and "
        "hands each accepted connection, round-robin, to one of N worker "
        "processes that serve --app.  Without --app, workers serve a page "
        "that shows the cluster.  Signals: TERM/INT stop gracefully."
    )

    optParameters = [
        ["workers", "w", None, "Worker processes to run (default: the number of CPUs).",
         _number(int, "workers", 1)],
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
         "Connections held by the master while no worker is ready.",
         _number(int, "queue-limit", 0)],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """
        Where to listen: a Twisted server endpoint string (tcp:8080,
        tcp6:8080, unix:/path/app.sock, ...).  Repeatable.  Default: tcp:8080.
        """
        self["listen"].append(description)

    opt_l = opt_listen

    def postOptions(self) -> None:
        if self["workers"] is None:
            self["workers"] = defaultWorkers()
        if not self["listen"]:
            self["listen"] = ["tcp:8080"]

    def config(self) -> ClusterConfig:
        """
        The cluster configuration these options describe.
        """
        return ClusterConfig(
            workers=self["workers"],
            app=self["app"],
            listen=tuple(self["listen"]),
            gracePeriod=self["grace-period"],
            startTimeout=self["start-timeout"],
            queueLimit=self["queue-limit"],
        )


class CommandLineService(ClusterService):
    """
    The cluster as run by C{twist}: a port that cannot be bound ends the
    process with one line instead of a traceback.
    """

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except ListenError as e:
            die(str(e))


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


def installSignals(reactor: Any, service: ClusterService) -> None:
    """
    TERM and INT stop the cluster gracefully; a second one kills the
    workers at once.  Installed once the reactor runs, over its own
    handlers, so that a graceful stop exits 0.
    """
    stopping = []

    def stop() -> None:
        if not stopping:
            stopping.append(True)
            reactor.stop()
        elif service.supervisor is not None:
            service.supervisor.stopNow()

    def handler(signum: int, frame: Any) -> None:
        reactor.callFromThread(stop)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def makeService(options: Options) -> ClusterService:
    """
    Build the cluster service from parsed options; check everything that can
    be checked before any process starts.
    """
    from twisted.internet import reactor

    config = options.config()
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
    exit = _Exit()

    def fatal(reason: str) -> None:
        exit.status = EXIT_FAILURE
        sys.stderr.write(f"twist cluster: error: {reason}\n")
        if reactor.running:
            reactor.stop()

    service = CommandLineService(reactor, config, onFatal=fatal, appLocator=appLocator)
    try:
        service.checkConfig()
    except ListenError as e:
        die(str(e))
    reactor.callWhenRunning(installSignals, reactor, service)
    return service
