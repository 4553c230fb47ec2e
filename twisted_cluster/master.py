"""
The master: owns the listening sockets, hands each accepted connection to a
ready worker, and runs the supervisor.

Data flows one way: listener -> L{Acceptor} -> dispatch policy ->
L{WorkerProcess.send} (the hand-off channel) -> worker.
"""

from __future__ import annotations

import signal
from collections import defaultdict, deque
from typing import Any, Callable

import os
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from twisted_cluster.acceptor import Acceptor, Accepted
from twisted_cluster.config import ClusterConfig
from twisted_cluster.dispatch import IDispatchPolicy, RoundRobin
from twisted_cluster.handoff import Connection
from twisted_cluster.listening import Listener, listen, parseEndpoint
from twisted_cluster.process import READY, WorkerProcess
from twisted_cluster.supervisor import Supervisor
from twisted_cluster.worker import WorkerConfig

log = Logger()


class ClusterService(Service):
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
    """

    name = "cluster"

    def __init__(
        self,
        reactor: Any,
        config: ClusterConfig,
        policy: IDispatchPolicy | None = None,
        onFatal: Callable[[str], None] = lambda reason: None,
        appLocator: Any = None,
    ) -> None:
        """
        @param reactor: provides process, socket, FD-set and time interfaces.
        @param onFatal: called once with one line when the cluster cannot
            run (the plugin prints it and stops the reactor).
        @param appLocator: the app's master-side AMP responders.
        """
        self._reactor = reactor
        self.config = config
        self._policy = policy if policy is not None else RoundRobin()
        self._onFatal = onFatal
        self._appLocator = appLocator
        self.listeners: list[Listener] = []
        self._acceptors: list[Acceptor] = []
        self.supervisor: Supervisor | None = None
        self._workers: dict[int, WorkerProcess] = {}
        self._waiting: deque[Connection] = deque()
        self._readyWaiters: list[Deferred[ClusterService]] = []
        self.fatalError: str | None = None
        self.dropped = 0
        self.redispatched = 0
        self._stopped: Deferred[None] | None = None

    # Start-up

    def checkConfig(self) -> None:
        """
        Parse every endpoint now, so that a typo fails before anything starts.

        @raise twisted_cluster.listening.ListenError: on a malformed endpoint.
        """
        for description in self.config.listen:
            parseEndpoint(self._reactor, description)

    def privilegedStartService(self) -> None:
        """
        Bind the listening sockets (as root, when ports below 1024 need it).
        Connections that arrive before a worker is ready wait in the kernel
        backlog; none is refused.

        @raise twisted_cluster.listening.ListenError: when a port cannot be
            bound.
        """
        if self.listeners:
            return
        try:
            for description in self.config.listen:
                self.listeners.append(listen(self._reactor, description))
        except Exception:
            self._closeListeners()
            raise
        super().privilegedStartService()

    def startService(self) -> None:
        """
        Bind if not done yet, then spawn the workers.
        """
        self.privilegedStartService()
        super().startService()
        self._acceptors = [
            Acceptor(self._reactor, self._reactor, listener.socket, self._sink(index))
            for index, listener in enumerate(self.listeners)
        ]
        for listener in self.listeners:
            log.info("listening on {address}", address=listener.address())
        self.supervisor = Supervisor(
            self._reactor, self.config, self._makeProcess, self._fatal
        )
        self.supervisor.start()

    def _makeProcess(self, workerId: int) -> WorkerProcess:
        workerConfig = WorkerConfig(
            workerId=workerId,
            app=self.config.app,
            families=tuple(listener.family for listener in self.listeners),
            listeners=tuple(listener.description for listener in self.listeners),
            drainTimeout=self.config.gracePeriod,
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
        )

    def whenReady(self) -> Deferred["ClusterService"]:
        """
        A Deferred that fires with this service once a worker is ready and
        connections are being accepted.
        """
        if self.supervisor is not None and self.supervisor.ready():
            return succeed(self)
        d: Deferred[ClusterService] = Deferred()
        self._readyWaiters.append(d)
        return d

    # Dispatch

    def _sink(self, index: int) -> Callable[[list[Accepted]], None]:
        def sink(accepted: list[Accepted]) -> None:
            self._dispatch([(fd, index) for fd, _ in accepted], [a for _, a in accepted])

        return sink

    def _dispatch(self, connections: list[Connection], peers: list[Any]) -> None:
        assert self.supervisor is not None
        ready = self.supervisor.ready()
        if not ready:
            self._hold(connections)
            return
        byId = {p.workerId: p for p in ready}
        ids = list(byId)
        choose = self._policy.choose
        batches: dict[int, list[Connection]] = defaultdict(list)
        for connection, peer in zip(connections, peers):
            batches[choose(ids, peer)].append(connection)
        for workerId, batch in batches.items():
            byId[workerId].send(batch)

    def _hold(self, connections: list[Connection]) -> None:
        room = self.config.queueLimit - len(self._waiting)
        for fd, index in connections[max(room, 0) :]:
            os.close(fd)
            self.dropped += 1
        self._waiting.extend(connections[: max(room, 0)])
        for acceptor in self._acceptors:
            acceptor.pause()

    def _workerReady(self, process: WorkerProcess) -> None:
        assert self.supervisor is not None
        self.supervisor.noteReady(process)
        if self.running and self._stopped is None:
            for acceptor in self._acceptors:
                acceptor.resume()
        if self._waiting:
            waiting = list(self._waiting)
            self._waiting.clear()
            self._dispatch(waiting, [None] * len(waiting))
        waiters, self._readyWaiters = self._readyWaiters, []
        for d in waiters:
            d.callback(self)

    def _workerAck(self, process: WorkerProcess, adopted: int, closed: int) -> None:
        pass

    def _workerLost(self, process: WorkerProcess, connections: list[Connection]) -> None:
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

    def workerTable(self) -> list[dict[str, Any]]:
        """
        The workers as plain data: id, pid, state, restarts.
        """
        if self.supervisor is None:
            return []
        return [
            {
                "id": p.workerId,
                "pid": p.pid,
                "state": p.state,
                "restarts": self.supervisor.slotRestarts(p.workerId),
                "dispatched": p.dispatched,
            }
            for p in self.supervisor.processes()
        ]

    # Stopping

    def _fatal(self, reason: str) -> None:
        if self.fatalError is not None:
            return
        self.fatalError = reason
        log.critical("cluster stopping: {reason}", reason=reason)
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
        self._closeListeners()

    def _closeListeners(self) -> None:
        for listener in self.listeners:
            listener.close()
        self.listeners = []

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting, drain every worker (grace period, then SIGKILL), and
        fire once every worker process is gone.
        """
        if self._stopped is not None:
            return self._stopped
        super().stopService()
        self._pauseAndClose(acceptBacklog=True)
        for fd, _ in self._waiting:
            os.close(fd)
        self._waiting.clear()
        if self.supervisor is None:
            self._stopped = succeed(None)
        else:
            log.info("stopping: draining workers (grace period {grace}s)",
                     grace=self.config.gracePeriod)
            self._stopped = self.supervisor.stop().addCallback(lambda _: None)
        return self._stopped
