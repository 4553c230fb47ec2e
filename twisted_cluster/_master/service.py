"""
The master: owns the listening sockets, hands each accepted connection to a
ready worker, and runs the supervisor.

Data flows one way: listener -> L{Acceptor} -> dispatch policy ->
L{WorkerProcess.send} (the hand-off channel) -> worker.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.logger import Logger
from twisted.protocols import amp
from zope.interface import Interface, implementer

from twisted_cluster import logevents
from twisted_cluster._contract.commands import ReopenLogs
from twisted_cluster._contract.handoff import Connection
from twisted_cluster._contract.workerconfig import WorkerConfig
from twisted_cluster._master.acceptor import Accepted, Acceptor
from twisted_cluster._master.config import ClusterConfig
from twisted_cluster._master.dispatch import IDispatchPolicy, policyNamed
from twisted_cluster._master.dispatcher import (
    ACK_DELAY,
    STALL_AFTER,
    STICKY_STALL_AFTER,
    Dispatcher,
)
from twisted_cluster._master.listening import (
    Listener,
    adoptListener,
    listen,
    parseEndpoint,
)
from twisted_cluster._master.masterevents import appMasterEvents
from twisted_cluster._master.proxypeek import HeaderPeeker
from twisted_cluster._master.routing import (
    ForwardingMasterContext,
    RelayLocator,
    WorkerCalls,
)
from twisted_cluster._shared.endpointstrings import endpointKind
from twisted_cluster._supervision.health import HealthMonitor, HealthPolicy
from twisted_cluster._supervision.interfaces import IWorkerObserver, WorkerObserver
from twisted_cluster._supervision.oom import OOMWitness
from twisted_cluster._supervision.process import (
    DRAINING,
    IWorkerProcess,
    ProcessReactor,
    WorkerProcess,
    workerRow,
)
from twisted_cluster._supervision.recycle import RecyclePolicy, Recycler
from twisted_cluster._supervision.refusal import RefusalReason, refuse
from twisted_cluster._supervision.rollout import RollingRestart
from twisted_cluster._supervision.supervisor import Supervisor
from twisted_cluster.calling import AppResponders
from twisted_cluster.clusterapp import Responders, makeLocator
from twisted_cluster.contexts import IMasterContext
from twisted_cluster.errors import ClusterFailed

log = Logger()


def _credentialFields(config: ClusterConfig) -> dict[str, Any]:
    credentials = config.credentials
    if credentials is None:
        return {}
    return {"uid": credentials.uid, "gid": credentials.gid, "groups": credentials.groups}


class MasterReactor(ProcessReactor, IReactorCore, IReactorFromThreads):
    """
    What the command line's master runs on: everything the service needs
    (L{ProcessReactor}), its life cycle (start, stop, shutdown triggers) and
    the signal handlers' way back into it.
    """


class IControlPlane(Interface):
    """
    A control site a L{ClusterService} serves while it runs (status,
    metrics, operations): built for it by whoever composes the cluster
    (L{twisted_cluster._control.site.controlPlane}), so that the master's
    data path knows nothing of the plane above it.
    """

    def listen() -> None:
        """
        Bind and serve; called as the master binds its listeners.
        """

    def stop() -> Deferred[None]:
        """
        Stop serving; called once every worker is gone.
        """

    def fileno() -> int | None:
        """
        The listening socket's descriptor while listening (for a master
        upgrade to hand over), else C{None}.
        """

    def release() -> None:
        """
        Stop serving in this process only: the socket goes to a new master
        (an upgrade), neither shut down nor its file removed.
        """


#: What builds the control site of a service: given the service and the
#: control socket it inherited from an old master (C{None}: it binds its
#: own), the site, or C{None} for none.
ControlPlaneFactory = Callable[["ClusterService", "int | None"], "IControlPlane | None"]


@implementer(IMasterContext, IWorkerObserver)
class ClusterService(ForwardingMasterContext, WorkerObserver, Service):
    """
    A Twisted service that runs a whole cluster: listeners, workers, hand-off.

    Use it from C{twist cluster} (the plugin builds it) or directly, for
    example from a trial test (see L{twisted_cluster.testing}).

    @ivar listeners: the bound listeners, once started.
    @ivar supervisor: the worker supervisor, once started.
    @ivar fatalError: the one-line reason the cluster gave up, if it did.
    @ivar dropped: connections closed because no worker was ready and the
        waiting queue was full.
    @ivar redispatched: connections handed to another worker because the
        first one died before adopting them.
    @ivar returned: connections a worker returned because it had no
        descriptor left for them, handed to another worker.
    """

    name: str | None = "cluster"  # type: ignore[assignment]

    def __init__(
        self,
        reactor: ProcessReactor,
        config: ClusterConfig,
        policy: IDispatchPolicy | None = None,
        onFatal: Callable[[str], None] = lambda reason: None,
        appLocator: Responders = None,
        controlPlane: ControlPlaneFactory | None = None,
        masterEvents: Any = None,
    ) -> None:
        """
        @param reactor: provides process, socket, FD-set and time interfaces.
        @param onFatal: called once with one line when the cluster cannot
            run (the plugin prints it and stops the reactor).
        @param appLocator: the app's master-side AMP responders
            (C{ClusterApp.masterResponders}): a locator, or a callable that
            takes this service (its L{IMasterContext}) and returns one.
        @param controlPlane: builds the control site this service serves
            (given the service and the control socket it inherited; it may
            return C{None}: no site), or
            C{None} for none.
        @param masterEvents: the app's L{IMasterEvents}
            (C{ClusterApp.masterEvents}): a provider, or a callable that
            takes this service and returns one.  Master-side responders
            that provide L{IMasterEvents} are told too.
        """
        self._reactor = reactor
        #: The master's clock (L{IMasterContext.clock}).
        self.clock = reactor
        self.config = config
        self._policy = policy if policy is not None else policyNamed(config.dispatch)
        self._keysOnClients: bool = getattr(self._policy, "keysOnClients", False)
        self._onFatal = onFatal
        self.calls = WorkerCalls(reactor, self._readyConnections, self._drainingConnections)
        #: The app's master-side responders, built with this service.
        self.masterResponders = makeLocator(appLocator, self)
        self._appLocator = AppResponders(RelayLocator(self.calls), self.masterResponders)
        self._appEvents = appMasterEvents(self.masterResponders, masterEvents, self)
        self.listeners: list[Listener] = []
        self._acceptors: list[Acceptor] = []
        self._peekers: list[HeaderPeeker] = []
        self.supervisor: Supervisor | None = None
        self._health: HealthMonitor | None = None
        self._rollout: RollingRestart | None = None
        #: The dispatch path: which worker gets each connection.
        self.dispatcher = Dispatcher(
            reactor, self._policy, self._supervisorReady, config.queueLimit,
            config.workerConnections,
        )
        self._readyWaiters: list[tuple[int, Deferred[ClusterService]]] = []
        self.fatalError: str | None = None
        self._stopped: Deferred[None] | None = None
        self._controlPlane = controlPlane
        self.control: IControlPlane | None = None
        #: What ends the master when an operator asks (L{shutdown}): the
        #: command line stops the reactor; run from your code, the service
        #: stops.
        self.requestStop: Callable[[], object] = self.stopService
        #: The scheduling policy workers set back at start (the command
        #: line's master yields to its workers, see
        #: L{twisted_cluster._shared.scheduling}); C{None}: they keep the master's.
        self.workerPolicy: int | None = None
        #: Listening sockets inherited from the master this one replaces
        #: (SIGUSR2, L{twisted_cluster._master.upgrade}): endpoint string ->
        #: descriptors, adopted in order instead of binding.
        self.inherited: dict[str, list[int]] = {}
        #: The inherited control socket: the site serves on it once the
        #: old master is gone (L{listenInheritedControl}).
        self.inheritedControl: int | None = None
        self._handedOver = False
        self._controlHandedOver = False

    # Start-up

    def checkConfig(self) -> None:
        """
        Parse every endpoint now, so that a typo fails before anything starts.

        @raise twisted_cluster._master.listening.ListenError: on a malformed endpoint.
        """
        for description in self.config.listen:
            if description not in self.inherited:
                # An inherited socket is adopted as it is (a systemd:
                # endpoint would look for its LISTEN_PID, the old master's).
                parseEndpoint(self._reactor, description)

    def privilegedStartService(self) -> None:
        """
        Bind the listening sockets (as root, when ports below 1024 need it).
        Connections that arrive before a worker is ready wait in the kernel
        backlog; none is refused.

        @raise twisted_cluster._master.listening.ListenError: when a port cannot be
            bound.
        """
        if self.listeners:
            return
        try:
            for description in self.config.listen:
                inherited = self.inherited.get(description)
                self.listeners.append(
                    adoptListener(self._reactor, description, inherited.pop(0))
                    if inherited
                    else listen(self._reactor, description, self.config.backlog)
                )
            self._listenControl()
        except Exception:
            self._closeListeners()
            raise
        super().privilegedStartService()

    def _listenControl(self) -> None:
        """
        Serve the control site, if this service was given one.
        """
        if self._controlPlane is not None:
            self.control = self._controlPlane(self, self.inheritedControl)
        if self.control is not None and self.inheritedControl is None:
            self.control.listen()

    def listenInheritedControl(self) -> None:
        """
        Serve the control site on the control socket inherited from the old
        master, once that one is gone (it serves its own until it exits).

        @raise twisted_cluster._control.site.ControlError: when it cannot.
        """
        fd, self.inheritedControl = self.inheritedControl, None
        if fd is not None and self.control is not None and not self.stopping:
            self.control.listen()

    def handOverFDs(self) -> tuple[list[tuple[str, int]], int | None]:
        """
        What a new master inherits at an upgrade (SIGUSR2): each listening
        socket as (endpoint string, this process's descriptor), and the
        control socket's descriptor when C{--control} names a fixed
        endpoint (C{auto} names its socket after the master's pid: the new
        master makes its own).
        """
        listeners = [(l.description, l.socket.fileno()) for l in self.listeners]
        control = None
        if self.control is not None and self.config.control not in (None, "auto"):
            control = self.control.fileno()
        return listeners, control

    def handOver(self) -> None:
        """
        Stop accepting and close this process's descriptors of the
        listening sockets without shutting them down: a new master accepts
        on them now.  The workers still drain as in a graceful stop, which
        the caller starts next; the control site is released, not
        closed, when it was handed over too.
        """
        self._controlHandedOver = self.handOverFDs()[1] is not None
        self._handedOver = True
        for acceptor in self._acceptors:
            acceptor.pause()
        for peeker in self._peekers:
            peeker.flush()
        for listener in self.listeners:
            listener.release()
        self.listeners = []

    def accepted(self) -> int:
        """
        Connections accepted so far, over every listener.
        """
        return sum(acceptor.accepted for acceptor in self._acceptors)

    def startService(self) -> None:
        """
        Bind if not done yet, then spawn the workers.
        """
        self.privilegedStartService()
        super().startService()
        self._acceptors = [
            Acceptor(
                self._reactor, self._reactor, listener.socket,
                self._sink(index, self._clientsOf(listener)),
            )
            for index, listener in enumerate(self.listeners)
        ]
        for listener in self.listeners:
            log.info("listening on {address}",
                     cluster_event=logevents.LISTENING, address=listener.address())
        self.supervisor = Supervisor(
            self._reactor, self.config, self._makeProcess, self._fatal,
            observers=[self, self.dispatcher, self._appEvents],
            oom=OOMWitness.ofThisProcess(),
        )
        self.supervisor.start()
        self._rollout = RollingRestart(self.supervisor)
        recycler = Recycler(
            self.supervisor,
            RecyclePolicy(self.config.maxConnections, self.config.maxMemory),
        )
        self._health = HealthMonitor(
            self._reactor,
            self.supervisor,
            HealthPolicy(self.config.healthInterval, self.config.healthTimeout),
            onFigures=recycler.check,
        )
        self._health.start()

    def _makeProcess(
        self, workerId: int, onReady: Callable[[IWorkerProcess], None]
    ) -> IWorkerProcess:
        workerConfig = WorkerConfig(
            workerId=workerId,
            app=self.config.app,
            families=tuple(listener.family for listener in self.listeners),
            listeners=tuple(listener.description for listener in self.listeners),
            drainTimeout=self.config.gracePeriod,
            pythonPath=self.config.pythonPath,
            ackDelay=ACK_DELAY,
            schedPolicy=self.workerPolicy,
            **_credentialFields(self.config),
        )
        return WorkerProcess(
            self._reactor,
            workerId,
            workerConfig,
            self.config.python,
            onReady=onReady,
            handoffObserver=self.dispatcher,
            listWorkers=self.workerTable,
            appLocator=self._appLocator,
            stallAfter=STICKY_STALL_AFTER if self._keysOnClients else STALL_AFTER,
        )

    def whenReady(self, workers: int = 1) -> Deferred["ClusterService"]:
        """
        A Deferred that fires with this service once C{workers} workers are
        ready and connections are being accepted, or fails with
        L{twisted_cluster.errors.ClusterFailed} if the cluster gives up first.
        """
        if self.fatalError is not None:
            return fail(ClusterFailed(self.fatalError))
        if self.supervisor is not None and len(self._readyIds()) >= workers:
            return succeed(self)
        d: Deferred[ClusterService] = Deferred()
        self._readyWaiters.append((workers, d))
        return d

    def _readyIds(self) -> set[int]:
        assert self.supervisor is not None
        return {process.workerId for process in self.supervisor.ready()}

    # Dispatch

    @property
    def dropped(self) -> int:
        """
        Connections closed because no worker was ready and the waiting
        queue was full (L{Dispatcher.dropped}).
        """
        return self.dispatcher.dropped

    @property
    def redispatched(self) -> int:
        """
        Connections handed to another worker because the first one died or
        stalled before receiving them (L{Dispatcher.redispatched}).
        """
        return self.dispatcher.redispatched

    @property
    def returned(self) -> int:
        """
        Connections a worker returned for lack of descriptors, handed to
        another worker (L{Dispatcher.returned}).
        """
        return self.dispatcher.returned

    @property
    def waiting(self) -> int:
        """
        Connections waiting in the master for a worker (none ready, or
        every one at C{--worker-connections}).
        """
        return self.dispatcher.waiting

    @property
    def capped(self) -> int:
        """
        Connections that waited because every worker had
        C{--worker-connections} open (L{Dispatcher.capped}).
        """
        return self.dispatcher.capped

    def _supervisorReady(self) -> list[IWorkerProcess]:
        assert self.supervisor is not None
        return self.supervisor.ready()

    def _sink(
        self, index: int, forward: Callable[[list[Connection], list[Any]], None] | None = None
    ) -> Callable[[list[Accepted]], None]:
        """
        What listener C{index}'s acceptor does with a batch: pass it to
        C{forward} (by default, L{_dispatch}) as connections and peers.
        """
        forward = forward or self.dispatcher.dispatch

        def sink(accepted: list[Accepted]) -> None:
            forward([(fd, index) for fd, _ in accepted], [a for _, a in accepted])

        return sink

    def _clientsOf(self, listener: Listener) -> Callable[[list[Connection], list[Any]], None]:
        """
        Where a listener's connections go before dispatch: through a
        L{HeaderPeeker} when the policy keys on clients and they come from a
        balancer speaking the PROXY protocol, straight to L{Dispatcher.dispatch}
        otherwise.
        """
        if not self._keysOnClients or endpointKind(listener.description) != "haproxy":
            return self.dispatcher.dispatch
        peeker = HeaderPeeker(self._reactor, listener.family, self.dispatcher.dispatch)
        self._peekers.append(peeker)
        return peeker.accepted

    def workerReady(self, process: IWorkerProcess) -> None:
        """
        A worker is ready (L{IWorkerObserver}): accept again if accepting
        was paused, or give it the listening sockets (C{--dispatch
        shared}), and fire L{whenReady}.
        """
        if self._policy.sharesListeners:
            self._shareListeners(process)
        elif self.running and self._stopped is None:
            for acceptor in self._acceptors:
                acceptor.resume()
        ready = len(self._readyIds())
        waiters = [(n, d) for n, d in self._readyWaiters if n <= ready]
        self._readyWaiters = [(n, d) for n, d in self._readyWaiters if n > ready]
        for _, d in waiters:
            d.callback(self)

    def _shareListeners(self, process: IWorkerProcess) -> None:
        """
        Give C{process} its own copy of every listening socket, for a policy
        whose workers accept for themselves (C{--dispatch shared}).
        """
        if self._stopped is not None or process.handoff is None:
            return
        process.handoff.shareListeners(
            [(os.dup(listener.socket.fileno()), index)
             for index, listener in enumerate(self.listeners)]
        )

    # Application calls (IMasterContext)

    def _readyConnections(self) -> dict[int, amp.AMP]:
        connections: dict[int, amp.AMP] = {}
        if self.supervisor is not None:
            for process in self.supervisor.ready():
                if process.control is not None:
                    # The slot holder comes first: it wins over a retiring one.
                    connections.setdefault(process.workerId, process.control)
        return connections

    def _drainingConnections(self) -> dict[int, amp.AMP]:
        # Alive, draining, and once ready: its app is loaded and its
        # clients may still be connected.
        connections: dict[int, amp.AMP] = {}
        if self.supervisor is not None:
            for process in self.supervisor.processes():
                control = process.control
                if (
                    process.state == DRAINING
                    and process.readyAt is not None
                    and control is not None
                    and control.transport is not None
                ):
                    connections[process.workerId] = control
        return connections

    def _masterContext(self) -> IMasterContext:
        # workerIds, callWorker and broadcast (ForwardingMasterContext).
        return self.calls

    def workerTable(self) -> list[dict[str, Any]]:
        """
        Every worker as L{twisted_cluster._supervision.process.workerRow} describes it.
        """
        supervisor = self.supervisor
        if supervisor is None:
            return []
        return [
            workerRow(p, supervisor.slotRestarts(p.workerId)) for p in supervisor.processes()
        ]

    # Operations (SIGHUP, SIGTTIN, SIGTTOU and the control API)

    def rollingRestart(self) -> Deferred[bool]:
        """
        Replace every worker, one at a time: each new worker (the app
        imported afresh) is ready before the old one drains.  A request
        during a roll-out rolls the workers running at that moment again.

        @return: fires with C{True} when every worker was replaced, C{False}
            when the roll-out was aborted (a new worker failed to start: the
            old ones keep serving) or the cluster is stopping.
        """
        if self._rollout is None or self.stopping:
            return succeed(False)
        return self._rollout.request()

    def addWorker(self) -> int | None:
        """
        Start one more worker.

        @return: its worker id, or C{None} when refused (the cluster is
            stopping or not started yet, C{--max-workers} is reached): the
            refusal is logged with its reason, by the supervisor once it
            runs.
        """
        if self.supervisor is None:
            self._refuseResize("add", logevents.ADD_REFUSED)
            return None
        return self.supervisor.addWorker()

    def removeWorker(self) -> int | None:
        """
        Take one worker (the highest id) out: it drains, then exits.

        @return: its worker id, or C{None} when refused (the last worker
            stays; the cluster is stopping or not started yet): the refusal
            is logged with its reason, by the supervisor once it runs.
        """
        if self.supervisor is None:
            self._refuseResize("remove", logevents.REMOVE_REFUSED)
            return None
        return self.supervisor.removeWorker()

    def _refuseResize(self, operation: str, key: str) -> None:
        """
        Log, once, that C{operation} (SIGTTIN, SIGTTOU) is refused before
        the supervisor runs: the workers are not started yet, or the
        service was stopped before they were.
        """
        if self.stopping:
            refuse(operation, RefusalReason.STOPPING, "the cluster is stopping",
                   cluster_event=key)
        else:
            refuse(operation, RefusalReason.NOT_RUNNING, "the workers are not started yet",
                   cluster_event=key)

    def reopenLogs(self) -> None:
        """
        Tell every worker that the logs were reopened (SIGUSR1), so that
        its app reopens the files it writes itself
        (C{IWorkerContext.onReopenLogs}).  A worker's own log lines go
        through the master's log and need nothing.
        """
        if self.supervisor is None:
            return
        told = 0
        for process in self.supervisor.processes():
            if process.control is not None and process.control.transport is not None:
                process.callRemote(ReopenLogs).addErrback(lambda _: None)
                told += 1
        log.info("asked {count} workers to reopen their logs",
                 cluster_event=logevents.WORKERS_REOPEN_ASKED, count=told)

    def shutdown(self, now: bool = False) -> None:
        """
        Stop the cluster as SIGTERM does (C{ctl shutdown}): stop accepting,
        drain the workers, exit 0.  With C{now} (C{ctl shutdown --now}),
        SIGKILL the workers first, as a second Ctrl-C does; also while a
        graceful stop runs, to end its wait.

        @raise OperationRefused: a graceful stop runs already (logged once).
        """
        if self.stopping and not now:
            raise refuse("shutdown", RefusalReason.STOPPING, "the cluster is stopping already",
                         cluster_event=logevents.SHUTDOWN_REFUSED)
        log.info("shutdown requested{how}", how=" (kill the workers now)" if now else "",
                 cluster_event=logevents.SHUTDOWN_REQUESTED, now=now)
        if now and self.supervisor is not None:
            self.supervisor.stopNow()
        if not self.stopping:
            # After the answer to whoever asked is written.
            self._reactor.callLater(0, self.requestStop)

    # Stopping

    def _stopHealth(self) -> None:
        if self._health is not None:
            self._health.stop()

    def _fatal(self, reason: str) -> None:
        if self.fatalError is not None:
            return
        self.fatalError = reason
        log.critical("cluster stopping: {reason}",
                     cluster_event=logevents.CLUSTER_FAILED, reason=reason)
        waiters, self._readyWaiters = self._readyWaiters, []
        for _, d in waiters:
            d.errback(ClusterFailed(reason))
        self._stopHealth()
        self._pauseAndClose()
        assert self.supervisor is not None
        self.supervisor.stopNow().addBoth(lambda _: self._onFatal(reason))

    def _pauseAndClose(self, acceptBacklog: bool = False) -> None:
        """
        Stop accepting and close the listeners.  With C{acceptBacklog}, the
        connections already waiting in the kernel's backlog are accepted and
        handed out first: closing a listener resets them otherwise.
        """
        for acceptor in self._acceptors:
            # A backlog handed over at an upgrade is the new master's.
            backlog = acceptBacklog and not self._handedOver
            if backlog and self.supervisor and self.supervisor.ready():
                acceptor.acceptAll()
            acceptor.pause()
        for peeker in self._peekers:
            peeker.flush()
        self._closeListeners()

    def _closeListeners(self) -> None:
        for listener in self.listeners:
            listener.close()
        self.listeners = []

    @property
    def stopping(self) -> bool:
        """
        Whether the cluster is on its way out: a graceful stop began (SIGTERM,
        SIGINT) or it gave up.  From that moment on it takes no new work, even
        while workers still finish theirs during the grace period; readiness
        probes say so at once (L{twisted_cluster._control.probes}).
        """
        return self._stopped is not None or self.fatalError is not None

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting, drain every worker (grace period, then SIGKILL), and
        fire once every worker process is gone.
        """
        if self._stopped is not None:
            return self._stopped
        super().stopService()
        self._stopHealth()
        self._pauseAndClose(acceptBacklog=True)
        self.dispatcher.closeWaiting()
        if self.supervisor is None:
            self._stopped = succeed(None)
        else:
            log.info("stopping: draining workers (grace period {grace}s)",
                     cluster_event=logevents.CLUSTER_STOPPING,
                     grace=self.config.gracePeriod)
            self._appEvents.clusterStopping()
            self._stopped = self.supervisor.stop().addCallback(lambda _: None)
        control = self.control
        if control is not None:
            # Serve the status page while the workers drain; close it last
            # (release it, when the new master of an upgrade serves on it).
            self._stopped.addCallback(
                lambda _: control.release() if self._controlHandedOver else control.stop()
            )
        return self._stopped
