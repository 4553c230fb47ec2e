"""
The master: owns the listening sockets, hands each accepted connection to a
ready worker, and runs the supervisor.

Data flows one way: listener -> L{Acceptor} -> dispatch policy ->
L{WorkerProcess.send} (the hand-off channel) -> worker.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import attr
import os
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.protocols import amp
from zope.interface import implementer

from twisted_cluster._master.acceptor import Acceptor, Accepted
from twisted_cluster.calling import AppResponders
from twisted_cluster.clusterapp import Responders, makeLocator
from twisted_cluster.contexts import IMasterContext
from twisted_cluster._master.routing import ForwardingMasterContext, RelayLocator, WorkerCalls
from twisted_cluster._master.config import ClusterConfig
from twisted_cluster._control.site import ControlServer, checkEndpoint, resolveEndpoint
from twisted_cluster._master.dispatch import IDispatchPolicy, policyNamed
from twisted_cluster.errors import ClusterFailed
from twisted_cluster._contract.handoff import Connection
from twisted_cluster._supervision.health import HealthMonitor, HealthPolicy
from twisted_cluster._supervision.recycle import RecyclePolicy, Recycler
from twisted_cluster._supervision.rollout import RollingRestart
from twisted_cluster._master.listening import Listener, listen, parseEndpoint
from twisted_cluster._supervision.process import READY, WorkerProcess, workerRow
from twisted_cluster._master.proxypeek import HeaderPeeker
from twisted_cluster._supervision.supervisor import Supervisor
from twisted_cluster._contract.workerconfig import WorkerConfig
from twisted_cluster._worker.wrapping import endpointKind

log = Logger()


def _credentialFields(config: ClusterConfig) -> dict[str, Any]:
    credentials = config.credentials
    if credentials is None:
        return {}
    return {"uid": credentials.uid, "gid": credentials.gid, "groups": credentials.groups}


#: Seconds a worker may leave connections unacknowledged before the master
#: sends new ones to the other workers (its hand-off channel checks on a
#: timer, see L{HandoffSender}).  A worker that serves acknowledges on its
#: next reactor turn, well within it; one whose turns take longer is busy,
#: and new work is better off elsewhere.  A stopped worker costs what it
#: holds and what reached it within this time.
STALL_AFTER = 0.01
#: The same for policies that keep a client on its worker (C{sticky}): a
#: short wait does not move a client's session elsewhere, a stop does.
STICKY_STALL_AFTER = 1.0
#: Seconds a worker may wait to acknowledge the connections it adopted, so
#: that one acknowledgement (and one wake-up of the master) covers all those
#: adopted meanwhile.  Safe because the master holds the worker's end of the
#: hand-off channel (see L{twisted_cluster._contract.handoff}); well below
#: L{STALL_AFTER}, so that a serving worker never looks stalled.
ACK_DELAY = 0.002
#: Seconds a stall lasts before the master logs it (once per stall).
STALL_LOG_AFTER = 1.0
#: Seconds the master sends nothing to a worker that returned connections
#: (it had no descriptor left for them), unless it reports closes first.
REFUSAL_REST = 1.0


@attr.s(auto_attribs=True)
class _Refusals:
    """
    One episode of a worker returning connections: how many so far, and
    when the last ones came back.
    """

    count: int
    last: float


@implementer(IMasterContext)
class ClusterService(ForwardingMasterContext, Service):
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
        reactor: Any,
        config: ClusterConfig,
        policy: IDispatchPolicy | None = None,
        onFatal: Callable[[str], None] = lambda reason: None,
        appLocator: Responders = None,
    ) -> None:
        """
        @param reactor: provides process, socket, FD-set and time interfaces.
        @param onFatal: called once with one line when the cluster cannot
            run (the plugin prints it and stops the reactor).
        @param appLocator: the app's master-side AMP responders
            (C{ClusterApp.masterResponders}): a locator, or a callable that
            takes this service (its L{IMasterContext}) and returns one.
        """
        self._reactor = reactor
        self.config = config
        self._policy = policy if policy is not None else policyNamed(config.dispatch)
        self._keysOnClients: bool = getattr(self._policy, "keysOnClients", False)
        self._onFatal = onFatal
        self.calls = WorkerCalls(reactor, self._readyConnections)
        #: The app's master-side responders, built with this service.
        self.masterResponders = makeLocator(appLocator, self)
        self._appLocator = AppResponders(RelayLocator(self.calls), self.masterResponders)
        self.listeners: list[Listener] = []
        self._acceptors: list[Acceptor] = []
        self._peekers: list[HeaderPeeker] = []
        self.supervisor: Supervisor | None = None
        self._health: HealthMonitor | None = None
        self._rollout: RollingRestart | None = None
        #: Connections (and their peers) held while no worker is ready.
        self._waiting: deque[tuple[Connection, Any]] = deque()
        self._ready: list[WorkerProcess] = []
        #: Stalled workers -> the call that logs the stall (spent once it
        #: did).
        self._stalled: dict[WorkerProcess, IDelayedCall] = {}
        #: Workers sent nothing for now (they returned connections) -> the
        #: call that ends the rest.
        self._resting: dict[WorkerProcess, IDelayedCall] = {}
        self._refusals: dict[WorkerProcess, _Refusals] = {}
        #: The ready list that L{_usable} last filtered, and the result.
        self._usableFrom: list[WorkerProcess] | None = None
        self._usableWorkers: list[WorkerProcess] = []
        self._droppedWaiting = 0
        self._readyWaiters: list[Deferred[ClusterService]] = []
        self.fatalError: str | None = None
        self.dropped = 0
        self.redispatched = 0
        self.returned = 0
        self._stopped: Deferred[None] | None = None
        self.control: ControlServer | None = None
        #: The scheduling policy workers set back at start (the command
        #: line's master yields to its workers, see
        #: L{twisted_cluster._shared.scheduling}); C{None}: they keep the master's.
        self.workerPolicy: int | None = None

    # Start-up

    def checkConfig(self) -> None:
        """
        Parse every endpoint now, so that a typo fails before anything starts.

        @raise twisted_cluster._master.listening.ListenError: on a malformed endpoint.
        """
        for description in self.config.listen:
            parseEndpoint(self._reactor, description)
        checkEndpoint(self._reactor, self.config.control)

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
                self.listeners.append(
                    listen(self._reactor, description, self.config.backlog)
                )
            self._listenControl()
        except Exception:
            self._closeListeners()
            raise
        super().privilegedStartService()

    def _listenControl(self) -> None:
        """
        Serve the control site (L{twisted_cluster._control.site}) if configured.
        """
        description = resolveEndpoint(self.config.control, os.getpid())
        if description is not None:
            self.control = ControlServer(self._reactor, self, description)
            self.control.listen()

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
            log.info("listening on {address}", address=listener.address())
        self.supervisor = Supervisor(
            self._reactor, self.config, self._makeProcess, self._fatal
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

    def _makeProcess(self, workerId: int) -> WorkerProcess:
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
            onReady=self._workerReady,
            onAck=self._workerAck,
            onLost=self._workerLost,
            listWorkers=self.workerTable,
            appLocator=self._appLocator,
            stallAfter=STICKY_STALL_AFTER if self._keysOnClients else STALL_AFTER,
            onStall=self._workerStalled,
            onReclaim=self._workerReclaimed,
        )

    def whenReady(self) -> Deferred["ClusterService"]:
        """
        A Deferred that fires with this service once a worker is ready and
        connections are being accepted, or fails with
        L{twisted_cluster.errors.ClusterFailed} if the cluster gives up first.
        """
        if self.fatalError is not None:
            return fail(ClusterFailed(self.fatalError))
        if self.supervisor is not None and self.supervisor.ready():
            return succeed(self)
        d: Deferred[ClusterService] = Deferred()
        self._readyWaiters.append(d)
        return d

    # Dispatch

    def _sink(
        self, index: int, forward: Callable[[list[Connection], list[Any]], None] | None = None
    ) -> Callable[[list[Accepted]], None]:
        """
        What listener C{index}'s acceptor does with a batch: pass it to
        C{forward} (by default, L{_dispatch}) as connections and peers.
        """
        forward = forward or self._dispatch

        def sink(accepted: list[Accepted]) -> None:
            forward([(fd, index) for fd, _ in accepted], [a for _, a in accepted])

        return sink

    def _clientsOf(self, listener: Listener) -> Callable[[list[Connection], list[Any]], None]:
        """
        Where a listener's connections go before dispatch: through a
        L{HeaderPeeker} when the policy keys on clients and they come from a
        balancer speaking the PROXY protocol, straight to L{_dispatch}
        otherwise.
        """
        if not self._keysOnClients or endpointKind(listener.description) != "haproxy":
            return self._dispatch
        peeker = HeaderPeeker(self._reactor, listener.family, self._dispatch)
        self._peekers.append(peeker)
        return peeker.accepted

    def _dispatch(self, connections: list[Connection], peers: list[Any]) -> None:
        # The hot path: one policy choice per connection, one hand-off
        # message per worker per batch, nothing logged.
        ready = self._readyWorkers()
        if self._stalled or self._resting:
            ready = self._usable(ready)
        if not ready:
            self._hold(connections, peers)
            return
        # The policy's keys are our worker processes.
        choose: Callable[..., Any] = self._policy.choose
        if len(connections) == 1:
            choose(ready, peers[0]).send(connections)
            return
        batches: dict[WorkerProcess, list[Connection]] = {}
        for connection, peer in zip(connections, peers):
            worker = choose(ready, peer)
            batch = batches.get(worker)
            if batch is None:
                batches[worker] = [connection]
            else:
                batch.append(connection)
        for worker, batch in batches.items():
            worker.send(batch)

    def _usable(self, ready: list[WorkerProcess]) -> list[WorkerProcess]:
        """
        C{ready} without the workers that rest (they returned connections:
        L{_workerAck}) and, unless every other one does too, without the
        stalled ones (L{_workerStalled}): a worker whose reactor is stopped
        or blocked gets no more connections long before its health ping
        times out, and the ones it holds go to other workers if it is
        killed.  Kept until a worker's state changes.
        """
        if self._usableFrom is not ready:
            usable = [p for p in ready if p not in self._resting]
            responsive = [p for p in usable if p not in self._stalled]
            self._usableWorkers = responsive or usable
            self._usableFrom = ready
        return self._usableWorkers

    def _workerStalled(self, process: WorkerProcess, stalled: bool) -> None:
        """
        C{process} left connections unacknowledged for its stall time
        (C{stalled}), or acknowledges again.  A stall that lasts
        L{STALL_LOG_AFTER} is logged, once, and so is its end.
        """
        self._usableFrom = None
        if stalled:
            handoff = process.handoff
            since = handoff.waitingSince if handoff is not None else None
            now = self._reactor.seconds()
            due = (since if since is not None else now) + STALL_LOG_AFTER
            self._stalled[process] = self._reactor.callLater(
                max(due - now, 0.0), self._logStall, process
            )
            return
        report = self._stalled.pop(process, None)
        if report is None:
            return
        if report.active():
            report.cancel()
        else:
            # The report fired STALL_LOG_AFTER into the stall.
            log.info(
                "worker {worker_id} pid {pid} acknowledges its connections again "
                "after {stalled_for:.1f}s",
                worker_id=process.workerId,
                pid=process.pid,
                stalled_for=self._reactor.seconds() - report.getTime() + STALL_LOG_AFTER,
            )

    def _logStall(self, process: WorkerProcess) -> None:
        handoff = process.handoff
        since = handoff.waitingSince if handoff is not None else None
        log.warn(
            "worker {worker_id} pid {pid} has not acknowledged {pending} connections "
            "for {seconds:.1f}s: new connections go to the other workers",
            worker_id=process.workerId,
            pid=process.pid,
            pending=handoff.pending if handoff is not None else 0,
            seconds=self._reactor.seconds() - since if since is not None else 0.0,
        )

    def _readyWorkers(self) -> list[WorkerProcess]:
        """
        The workers that may take connections, without asking the supervisor
        for every batch: the list is kept until one of its workers leaves
        the ready state or a worker becomes ready (L{_workerReady}).
        """
        ready = self._ready
        for process in ready:
            if process.state != READY:
                break
        else:
            if ready:
                return ready
        assert self.supervisor is not None
        ready = self._ready = self.supervisor.ready()
        return ready

    def _hold(self, connections: list[Connection], peers: list[Any]) -> None:
        """
        No worker is ready: keep accepting, and keep the connections until
        one is (L{_workerReady}), up to C{queueLimit}; close those past the
        limit and count them in L{dropped}.
        """
        room = max(self.config.queueLimit - len(self._waiting), 0)
        for fd, _ in connections[room:]:
            os.close(fd)
        dropped = max(len(connections) - room, 0)
        if dropped and not self._droppedWaiting:
            log.warn(
                "no worker ready and {limit} connections waiting (--queue-limit): "
                "closing new ones until a worker is ready",
                limit=self.config.queueLimit,
            )
        self.dropped += dropped
        self._droppedWaiting += dropped
        self._waiting.extend(zip(connections[:room], peers[:room]))

    def _workerReady(self, process: WorkerProcess) -> None:
        assert self.supervisor is not None
        self.supervisor.noteReady(process)
        self._ready = []
        if self._policy.sharesListeners:
            self._shareListeners(process)
        elif self.running and self._stopped is None:
            for acceptor in self._acceptors:
                acceptor.resume()
        if self._waiting or self._droppedWaiting:
            waiting = list(self._waiting)
            log.info(
                "worker {worker_id} pid {pid} ready: handing out {count} connections "
                "that waited for a worker ({dropped} closed while the queue was full)",
                worker_id=process.workerId,
                pid=process.pid,
                count=len(waiting),
                dropped=self._droppedWaiting,
            )
            self._waiting.clear()
            self._droppedWaiting = 0
            self._dispatch([c for c, _ in waiting], [peer for _, peer in waiting])
        waiters, self._readyWaiters = self._readyWaiters, []
        for d in waiters:
            d.callback(self)

    def _shareListeners(self, process: WorkerProcess) -> None:
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

    def _workerAck(
        self, process: WorkerProcess, taken: int, closed: int, returned: list[Connection]
    ) -> None:
        """
        An acknowledgement from C{process} (see L{twisted_cluster._contract.handoff}).
        Connections it returned go to other workers (or wait for one), and
        it gets none for L{REFUSAL_REST} seconds or until it reports closes.
        """
        if closed:
            self._policy.closed(process, closed)
        if returned:
            self._refused(process, returned)
            return
        if closed and process in self._resting:
            self._rested(process)
        if taken and self._refusals:
            refusals = self._refusals.get(process)
            if refusals is not None and (
                self._reactor.seconds() - refusals.last >= REFUSAL_REST
            ):
                del self._refusals[process]
                log.info(
                    "worker {worker_id} pid {pid} takes connections again "
                    "({refused_total} returned meanwhile)",
                    worker_id=process.workerId,
                    pid=process.pid,
                    refused_total=refusals.count,
                )

    def _refused(self, process: WorkerProcess, connections: list[Connection]) -> None:
        """
        C{process} had no descriptor left for C{connections}: hand them to
        another worker, and rest it.  Logged once per episode: until it
        has taken connections for L{REFUSAL_REST} seconds without returning
        any.
        """
        count = len(connections)
        now = self._reactor.seconds()
        self.returned += count
        # They never opened there (least-connections counts them).
        self._policy.closed(process, count)
        refusals = self._refusals.get(process)
        if refusals is None:
            self._refusals[process] = _Refusals(count, now)
            log.warn(
                "worker {worker_id} pid {pid} could not take {refused} connections "
                "(out of file descriptors): handing them to other workers, and "
                "none to it until it closes some",
                worker_id=process.workerId,
                pid=process.pid,
                refused=count,
            )
        else:
            refusals.count += count
            refusals.last = now
        if process not in self._resting:
            self._resting[process] = self._reactor.callLater(
                REFUSAL_REST, self._rested, process
            )
            self._usableFrom = None
        self._dispatch(connections, [None] * count)

    def _rested(self, process: WorkerProcess) -> None:
        """
        C{process} may take connections again: those that waited for a
        worker with room go out now.
        """
        rest = self._resting.pop(process, None)
        if rest is None:
            return
        if rest.active():
            rest.cancel()
        self._usableFrom = None
        # A queue that fills again is logged again (L{_hold}).
        self._droppedWaiting = 0
        if self._waiting:
            waiting = list(self._waiting)
            self._waiting.clear()
            self._dispatch([c for c, _ in waiting], [peer for _, peer in waiting])

    def _workerReclaimed(
        self, process: WorkerProcess, connections: list[Connection]
    ) -> None:
        """
        C{process} stalled before it received C{connections}, and the master
        took them back from its hand-off channel: they go to the other
        workers now, instead of waiting for it to resume or be killed.
        """
        count = len(connections)
        self._policy.closed(process, count)
        self.redispatched += count
        self._dispatch(connections, [None] * count)

    def _workerLost(self, process: WorkerProcess, connections: list[Connection]) -> None:
        self._policy.forget(process)
        for calls in (self._stalled, self._resting):
            call = calls.pop(process, None)
            if call is not None and call.active():
                call.cancel()
        self._refusals.pop(process, None)
        self._usableFrom = None
        handoff = process.handoff
        if handoff is not None and handoff.closedWithWorker:
            log.info(
                "worker {worker_id} pid {pid} died with {count} connections it had "
                "received: they are closed",
                worker_id=process.workerId,
                pid=process.pid,
                count=handoff.closedWithWorker,
            )
        if not connections:
            return
        self.redispatched += len(connections)
        log.warn(
            "worker {worker_id} pid {pid} left {count} connections unadopted: "
            "handing them to other workers",
            worker_id=process.workerId,
            pid=process.pid,
            count=len(connections),
        )
        self._reactor.callLater(0, self._dispatch, connections, [None] * len(connections))

    # Application calls (IMasterContext)

    def _readyConnections(self) -> dict[int, amp.AMP]:
        connections: dict[int, amp.AMP] = {}
        if self.supervisor is not None:
            for process in self.supervisor.ready():
                if process.control is not None:
                    # The slot holder comes first: it wins over a retiring one.
                    connections.setdefault(process.workerId, process.control)
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

        @return: its worker id, or C{None} while the cluster is stopping.
        """
        if self.supervisor is None or self.stopping:
            return None
        return self.supervisor.addWorker()

    def removeWorker(self) -> int | None:
        """
        Take one worker (the highest id) out: it drains, then exits.

        @return: its worker id, or C{None} when refused (the last worker
            stays; the cluster is stopping).
        """
        if self.supervisor is None or self.stopping:
            return None
        return self.supervisor.removeWorker()

    # Stopping

    def _stopHealth(self) -> None:
        if self._health is not None:
            self._health.stop()

    def _fatal(self, reason: str) -> None:
        if self.fatalError is not None:
            return
        self.fatalError = reason
        log.critical("cluster stopping: {reason}", reason=reason)
        waiters, self._readyWaiters = self._readyWaiters, []
        for d in waiters:
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
            if acceptBacklog and self.supervisor and self.supervisor.ready():
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
        for (fd, _), _ in self._waiting:
            os.close(fd)
        self._waiting.clear()
        if self.supervisor is None:
            self._stopped = succeed(None)
        else:
            log.info("stopping: draining workers (grace period {grace}s)",
                     grace=self.config.gracePeriod)
            self._stopped = self.supervisor.stop().addCallback(lambda _: None)
        control = self.control
        if control is not None:
            # Serve the status page while the workers drain; close it last.
            self._stopped.addCallback(lambda _: control.stop())
        return self._stopped
