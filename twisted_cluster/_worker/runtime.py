"""
The worker process: C{python -m twisted_cluster.workermain CONFIG}.

The master spawns each worker with:
  - fd 3: the AMP control channel (L{twisted_cluster._contract.commands});
  - fd 4: the hand-off channel (L{twisted_cluster._contract.handoff});
  - fd 5: a pipe for the worker's log events, one JSON event per line;
  - fd 1 and 2: pipes whose lines the master logs under the worker's name;
  - C{CONFIG}: a JSON object (L{WorkerConfig}).

The worker loads the app, calls its C{workerStarted} hooks, says L{Ready},
adopts the connections it is handed and serves them.  It exits when the
master asks it to drain, when it gets SIGTERM (after draining) and when the
control channel closes (the master is gone: no orphan outlives it).  SIGINT, SIGHUP, SIGTTIN and SIGTTOU are
ignored: a Ctrl-C or a hang-up in a terminal reaches the whole process
group, and the master decides (they are its operator signals).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import socket
import sys
from typing import Any, Callable, cast

from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_cluster import logevents
from twisted_cluster._contract import (
    CONTROL_FD,
    HANDOFF_FD,
    LOG_FD,
    STACKS_FD,
    STACKS_SIGNAL,
    commands,
)
from twisted_cluster._contract.amp import ChannelFactory, ControlAMP
from twisted_cluster._contract.handoff import HandoffReactor
from twisted_cluster._contract.workerconfig import WorkerConfig
from twisted_cluster._shared.adoptedport import adoptListeningPort
from twisted_cluster._shared.endpointstrings import EndpointReactor
from twisted_cluster._shared.exhaustion import EXHAUSTED
from twisted_cluster._shared.privileges import (
    Credentials,
    PrivilegeError,
    dropPrivileges,
)
from twisted_cluster._shared.scheduling import restorePolicy
from twisted_cluster._shared.workerlog import logToMaster
from twisted_cluster._worker.adoption import adoptConnection, immediateReader
from twisted_cluster._worker.apphooks import AppHooks
from twisted_cluster._worker.appmetrics import AppMetrics
from twisted_cluster._worker.draining import Drain
from twisted_cluster._worker.handoffreceiver import HandoffReceiver
from twisted_cluster._worker.tracking import ConnectionTracker
from twisted_cluster._worker.wrapping import WrappingError, wrapperFor
from twisted_cluster.apploading import (
    AppLoadError,
    buildWorkerApp,
    buildWorkerHooks,
    metricsOptions,
    resolveName,
)
from twisted_cluster.calling import AppResponders
from twisted_cluster.contexts import WorkerContext

#: Seconds a worker may wait to coalesce its counts of closed connections
#: (L{HandoffReceiver}); adoptions wait as long as the master allows
#: (L{WorkerConfig.ackDelay}).
CLOSE_DELAY = 0.005

#: Exit status of a worker that could not load its app.
EXIT_APP_ERROR = 3



def currentRSS() -> int:
    """
    This process's resident memory in bytes (0 where it cannot be read).
    """
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class WorkerReactor(EndpointReactor, HandoffReactor):
    """
    What a worker needs of the reactor: to adopt its control channel and
    the connections it is handed, watch its hand-off channel, keep time,
    and parse its listeners' endpoints (for their TLS settings).
    """


class WorkerControl(ControlAMP):
    """
    The worker's end of the control channel.
    """

    def __init__(self, worker: "Worker", appLocator: Any = None) -> None:
        super().__init__(appLocator)
        self._worker = worker

    @commands.Ping.responder
    def ping(self) -> dict[str, int]:
        tracker = self._worker.tracker
        return commands.PingFigures(
            open=tracker.open if tracker else 0,
            served=tracker.served if tracker else 0,
            rss=currentRSS(),
        ).asAnswer()

    @commands.CollectMetrics.responder
    def collectMetrics(self) -> dict[str, bytes]:
        metrics = self._worker.metrics
        if metrics is None:
            raise commands.MetricsUnavailable("the app is not loaded")
        return {"snapshot": metrics.snapshot()}

    @commands.Drain.responder
    def drain(self, within: float | None = None) -> dict[str, Any]:
        self._worker.drain(within)
        return {}

    @commands.ReopenLogs.responder
    def reopenLogs(self) -> dict[str, Any]:
        # The worker's own lines go through the master: only the app's
        # files need it.
        if self._worker.context is not None:
            self._worker.context.reopenLogs()
        return {}

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self._worker.controlLost()


class Worker:
    """
    One worker: loads the app, serves handed-off connections, drains.

    @ivar tracker: counts the app's connections once the app is loaded.
    @ivar exitCode: the status the process exits with.
    """

    log = Logger()

    def __init__(
        self,
        reactor: WorkerReactor,
        config: WorkerConfig,
        stop: Callable[[], None],
        controlFD: int = CONTROL_FD,
        handoffFD: int = HANDOFF_FD,
    ) -> None:
        """
        @param stop: called once the worker is done (stops the reactor).
        """
        self._reactor = reactor
        self._readAtOnce = immediateReader(reactor)
        self.config = config
        self._stop = stop
        self._controlFD = controlFD
        self._handoffFD = handoffFD
        self.control: WorkerControl | None = None
        #: What the app sees of this worker, once it is loaded.
        self.context: WorkerContext | None = None
        self.tracker: ConnectionTracker | None = None
        #: The app's metrics, once it is loaded.
        self.metrics: AppMetrics | None = None
        self._receiver: HandoffReceiver | None = None
        self._hooks = AppHooks(config.workerId, ())
        self._factories: list[IProtocolFactory] = []
        self._ports: list[Any] = []
        self._sessions = 0
        #: Transports adopted in the current read of the hand-off channel.
        self._fresh: list[Any] = []
        #: Connections received and closed unadopted for lack of a
        #: resource since the last one adopted (0: none, nothing logged).
        self._exhausted = 0
        self._draining = False
        self._drain: Drain | None = None
        self._done = False
        self.exitCode = 0

    @property
    def workerId(self) -> int:
        return self.config.workerId

    def start(self) -> None:
        """
        Connect to the master, load the app, say Ready.
        """
        control = self.control = WorkerControl(self)
        self._reactor.adoptStreamConnection(
            self._controlFD, socket.AF_UNIX, ChannelFactory(control)
        )
        os.close(self._controlFD)
        try:
            # TLS keys are read first, while the worker may still be root.
            wrappers = [wrapperFor(self._reactor, d) for d in self.config.listeners]
            self._dropPrivileges()
            factory = self._loadApp()
        except (WrappingError, PrivilegeError) as e:
            self._startupFailed(str(e), "")
            return
        except AppLoadError as e:
            self._startupFailed(str(e), e.details)
            return
        self.tracker = ConnectionTracker(factory, self._connectionClosed)
        self.tracker.doStart()
        self._factories = [wrap(self.tracker) for wrap in wrappers]
        sock = socket.socket(fileno=self._handoffFD)
        sock.setblocking(False)
        self._receiver = HandoffReceiver(
            self._reactor, sock, self._adopt, self.controlLost,
            adoptListener=self._adoptListener, closeDelay=CLOSE_DELAY,
            ackDelay=self.config.ackDelay, afterAdopt=self._readFresh,
        )
        self._hooks.started().addCallbacks(self._ready, self._hookFailed)

    def _ready(self, _: object) -> None:
        """
        The app's C{workerStarted} hooks are done: say Ready (unless the
        worker was told to drain meanwhile).
        """
        if self._done or self._draining or self.control is None:
            return
        self.control.callRemote(commands.Ready, pid=os.getpid()).addErrback(
            self._controlFailed
        )

    def _hookFailed(self, failure: Failure) -> None:
        if self._done:
            return
        self._startupFailed(
            f"the app's workerStarted hook failed: {failure.type.__name__}: "
            f"{failure.value}",
            failure.getTraceback(),
        )

    def _dropPrivileges(self) -> None:
        config = self.config
        if config.uid is not None and config.gid is not None:
            dropPrivileges(Credentials(config.uid, config.gid, config.groups))

    def _loadApp(self) -> IProtocolFactory:
        """
        Load the app and install its worker-side responders (a
        L{twisted_cluster.ClusterApp}'s) on the control channel.
        """
        assert self.control is not None
        name = self.config.app
        if name is None:
            from twisted_cluster.defaultapp import clusterPage

            name = f"{clusterPage.__module__}.clusterPage"
        self.context = WorkerContext(self.workerId, self.control, self._reactor)
        obj = resolveName(name)
        factory, locator = buildWorkerApp(obj, name, self.context)
        self.metrics = AppMetrics(self.workerId, *metricsOptions(obj, name), clock=self._reactor)
        self.control.appLocator = AppResponders(locator)
        self._hooks = AppHooks(self.workerId, buildWorkerHooks(obj, name, self.context))
        return factory

    def _startupFailed(self, error: str, details: str) -> None:
        assert self.control is not None
        self.exitCode = EXIT_APP_ERROR
        d = self.control.callRemote(commands.StartupFailed, error=error, details=details)
        d.addBoth(lambda _: self._finish())

    def _controlFailed(self, failure: Any) -> None:
        self.log.failure("control channel call failed", failure,
                         cluster_event=logevents.CONTROL_CALL_FAILED)
        self.controlLost()

    def _adopt(self, fd: int, index: int) -> None:
        # The hot path of a worker (see twisted_cluster._worker.adoption).
        self._sessions += 1
        try:
            transport = adoptConnection(
                self._reactor, fd, self.config.families[index],
                self._factories[index], self._sessions,
            )
        except OSError as e:
            transport = None
            if e.errno in EXHAUSTED:
                # Out of descriptors or memory: the connection is closed
                # (the client sees it) and counted; one line per episode.
                if not self._exhausted:
                    self.log.warn(
                        "worker {worker_id} cannot adopt connections ({error}): "
                        "closing them until it can",
                        cluster_event=logevents.ADOPTION_EXHAUSTED,
                        worker_id=self.workerId, error=e,
                    )
                self._exhausted += 1
            else:
                # The client is gone already (reset while the connection
                # waited, e.g. handed over again after a worker died): one
                # connection lost, not the hand-off channel.
                self.log.info("dropped a connection reset before adoption: {error}",
                              cluster_event=logevents.ADOPTION_RESET, error=e)
        except Exception:
            # The app's factory failed on this one connection: it is closed,
            # the worker serves the others.
            self.log.failure("the app could not take a connection",
                             cluster_event=logevents.APP_CONNECTION_FAILED)
            transport = None
        if transport is None:
            if self._receiver is not None:
                self._receiver.connectionClosed()
            return
        self._fresh.append(transport)
        if self._exhausted:
            self.log.info(
                "worker {worker_id} adopts connections again ({count} closed unadopted)",
                cluster_event=logevents.ADOPTION_RESUMED,
                worker_id=self.workerId, count=self._exhausted,
            )
            self._exhausted = 0

    def _readFresh(self) -> None:
        # Read the requests already waiting on what was just adopted.
        fresh, self._fresh = self._fresh, []
        self._readAtOnce(fresh)

    def _adoptListener(self, fd: int, index: int) -> None:
        """
        Accept on a copy of listener C{index} (C{--dispatch shared}) until
        the worker drains.  The master created the socket: the worker
        leaves its file, mode and backlog alone, leaving included.
        """
        try:
            if self._draining or self._done:
                return
            self._ports.append(
                adoptListeningPort(
                    self._reactor, fd, self.config.families[index],
                    self._factories[index],
                )
            )
        finally:
            os.close(fd)

    def _connectionClosed(self) -> None:
        if self._receiver is not None:
            self._receiver.connectionClosed()
        if self._drain is not None:
            self._drain.connectionClosed()

    def drain(self, within: float | None = None) -> None:
        """
        Take no more connections, tell the app (its C{workerDraining}
        hooks, given the deadline), close idle connections, finish those in
        flight, then exit.

        How the connections are drained is L{Drain}'s: an app that
        declares a drain owns its connections and the worker exits as soon
        as it is done; one that declares none is drained for it.  The
        master kills a worker whose drain outlasts the grace period; the
        worker also gives up by itself at the deadline.

        @param within: seconds until the master kills this worker (C{None}:
            the configured C{drainTimeout}, from a master that did not say).
        """
        if self._draining or self._done:
            return
        self._draining = True
        ports, self._ports = self._ports, []
        for port in ports:
            port.stopListening()
        if self._receiver is not None:
            # Adopt what the master already sent: it counts on us for it.
            self._receiver.doRead()
        if self.tracker is None:
            self._finish()
            return
        within = self.config.drainTimeout if within is None else within
        self._drain = Drain(
            self._reactor, self.workerId, self.tracker, self._hooks, self._finish
        )
        self._drain.start(within)

    def controlLost(self) -> None:
        """
        The master is gone (or the channel broke): drain and exit, so that no
        worker outlives its master.
        """
        if self.tracker is None:
            self._finish()
        else:
            self.drain()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._drain is not None:
            self._drain.stop()
        if self._receiver is not None:
            # Acknowledge every adoption before exiting: the master would
            # otherwise hand those connections out again.
            self._receiver.flush()
        if self.tracker is not None:
            self._hooks.stopping()
            # The app's factory's stopFactory, as a port would call it.
            self.tracker.doStop()
        if self.metrics is None:
            self._stop()
            return
        # What the app counted since the last scrape goes to the master.
        self.metrics.sendFinal(self.control, self._reactor).addBoth(lambda _: self._stop())


def dumpStacksOnSignal() -> None:
    """
    Write the stacks of all threads to L{STACKS_FD} on L{STACKS_SIGNAL}:
    the master asks for them before it kills this worker as hung, and its
    log then says where the worker was stuck.  C{faulthandler}'s handler
    is C code, so it runs even while the reactor is blocked.  A master
    that opened no such pipe (an older one) gets nothing.
    """
    try:
        os.set_inheritable(STACKS_FD, False)
    except OSError:
        return
    faulthandler.register(STACKS_SIGNAL, file=STACKS_FD, all_threads=True)


def main(argv: list[str] | None = None) -> None:
    """
    Run one worker with the configuration the master passed in C{argv[1]}.
    """
    argv = sys.argv if argv is None else argv
    config = WorkerConfig.fromJSON(argv[1])
    restorePolicy(config.schedPolicy)
    # `cd myproject && twist cluster --app mymod.resource` must find mymod.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    logToMaster(LOG_FD)
    dumpStacksOnSignal()
    from twisted.internet import reactor

    # The platform's default reactor (epoll on Linux) provides all of them.
    worker = Worker(cast(WorkerReactor, reactor), config, reactor.stop)

    def installSignals() -> None:
        for ignored in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(ignored, signal.SIG_IGN)
        signal.signal(
            signal.SIGTERM,
            lambda *_: reactor.callFromThread(worker.drain),  # type: ignore[attr-defined]
        )

    reactor.callWhenRunning(installSignals)
    reactor.callWhenRunning(worker.start)
    reactor.run()
    sys.exit(worker.exitCode)

