"""
The master's dispatch path: which worker gets each accepted connection, and
what happens to connections no worker can take now.

L{Dispatcher} keeps the ready list between batches, leaves out workers that
stalled (their hand-off channel says so) or returned connections (out of
descriptors), holds connections while no worker is ready (up to
C{--queue-limit}), and hands out again what a worker gave back, left
behind or never received.  The cluster service builds it and wires the
workers' hand-off events to it; the policy (L{twisted_cluster._master.dispatch})
only chooses among the workers it is given.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Callable

import attr
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_cluster import logevents
from twisted_cluster._contract.handoff import Connection
from twisted_cluster._master.dispatch import IDispatchPolicy
from twisted_cluster._supervision.interfaces import IWorkerObserver, WorkerObserver
from twisted_cluster._supervision.process import (
    READY,
    IHandoffObserver,
    IWorkerProcess,
    workerFields,
)

log = Logger()

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


@implementer(IHandoffObserver, IWorkerObserver)
class Dispatcher(WorkerObserver):
    """
    The dispatch path of one cluster.

    @ivar dropped: connections closed because no worker was ready and the
        waiting queue was full.
    @ivar redispatched: connections handed to another worker because the
        first one died before receiving them, or stalled with them queued.
    @ivar returned: connections a worker returned because it had no
        descriptor left for them, handed to another worker.
    @ivar capped: connections that waited in the master because every
        ready worker had C{workerConnections} open.
    """

    def __init__(
        self,
        clock: IReactorTime,
        policy: IDispatchPolicy,
        allReady: Callable[[], list[IWorkerProcess]],
        queueLimit: int,
        workerConnections: int = 0,
    ) -> None:
        """
        @param policy: chooses a worker for each connection.
        @param allReady: the workers that are ready now (the supervisor's
            list), read again only when a worker changes state.
        @param queueLimit: most connections held while no worker is ready.
        @param workerConnections: most connections open in one worker at a
            time (C{--worker-connections}; 0: no cap).  A worker at the cap
            gets none while another has room; when none has, they wait in
            the master (up to C{queueLimit}).
        """
        self._reactor = clock
        self._policy = policy
        self._allReady = allReady
        self._queueLimit = queueLimit
        #: Connections (and their peers) held while no worker is ready.
        self._waiting: deque[tuple[Connection, Any]] = deque()
        self._ready: list[IWorkerProcess] = []
        #: Stalled workers -> the call that logs the stall (spent once it
        #: did).
        self._stalled: dict[IWorkerProcess, IDelayedCall] = {}
        #: Workers sent nothing for now (they returned connections) -> the
        #: call that ends the rest.
        self._resting: dict[IWorkerProcess, IDelayedCall] = {}
        self._refusals: dict[IWorkerProcess, _Refusals] = {}
        #: The ready list that L{_usable} last filtered, and the result.
        self._usableFrom: list[IWorkerProcess] | None = None
        self._usableWorkers: list[IWorkerProcess] = []
        self._droppedWaiting = 0
        self.dropped = 0
        self.redispatched = 0
        self.returned = 0
        self._cap = workerConnections
        #: What each worker holds, as the master knows it without asking:
        #: connections sent, less those its acknowledgements report closed
        #: or returned, and those taken back (kept only with a cap).
        self._open: dict[IWorkerProcess, int] = {}
        #: Workers at the cap.
        self._full: set[IWorkerProcess] = set()
        #: Connections held because every worker is full, this episode
        #: (C{None}: not in one).
        self._capEpisode: int | None = None
        #: Whether the waiting queue is being handed out (a connection held
        #: again is not counted again).
        self._releasing = False
        self.capped = 0

    @property
    def waiting(self) -> int:
        """
        How many connections wait for a worker.
        """
        return len(self._waiting)

    def workerReady(self, process: IWorkerProcess) -> None:
        """
        C{process} became ready: the ready list is read again, and the
        connections that waited for a worker go out now.
        """
        self._ready = []
        if self._waiting or self._droppedWaiting:
            log.info(
                "worker {worker_id} pid {worker_pid} ready: handing out {count} connections "
                "that waited for a worker ({dropped} closed while the queue was full)",
                cluster_event=logevents.QUEUE_RELEASED,
                **workerFields(process),
                count=len(self._waiting),
                dropped=self._droppedWaiting,
            )
            self._droppedWaiting = 0
            self._releaseWaiting()

    def closeWaiting(self) -> None:
        """
        The cluster stops: close the connections that still wait.
        """
        for (fd, _), _ in self._waiting:
            os.close(fd)
        self._waiting.clear()

    def openConnections(self, process: IWorkerProcess) -> int:
        """
        How many connections C{process} holds as far as the master knows
        (counted only under a C{workerConnections} cap, else 0).
        """
        return self._open.get(process, 0)

    def dispatch(self, connections: list[Connection], peers: list[Any]) -> None:
        # The hot path: one policy choice per connection, one hand-off
        # message per worker per batch, nothing logged.
        if self._cap:
            self._dispatchCapped(connections, peers)
            return
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
        batches: dict[IWorkerProcess, list[Connection]] = {}
        for connection, peer in zip(connections, peers):
            worker = choose(ready, peer)
            batch = batches.get(worker)
            if batch is None:
                batches[worker] = [connection]
            else:
                batch.append(connection)
        for worker, batch in batches.items():
            worker.send(batch)

    def _dispatchCapped(self, connections: list[Connection], peers: list[Any]) -> None:
        """
        L{dispatch} under a C{workerConnections} cap: each connection goes
        to a worker with room, counted at once, so that a batch fills a
        worker no further than its cap; what no worker has room for waits.
        """
        choose: Callable[..., Any] = self._policy.choose
        batches: dict[IWorkerProcess, list[Connection]] = {}
        ready: list[IWorkerProcess] | None = None
        for index, (connection, peer) in enumerate(zip(connections, peers)):
            if ready is None:
                ready = self._usable(self._readyWorkers())
            if not ready:
                self._holdFull(connections[index:], peers[index:])
                break
            worker = choose(ready, peer)
            batch = batches.get(worker)
            if batch is None:
                batches[worker] = [connection]
            else:
                batch.append(connection)
            count = self._open[worker] = self._open.get(worker, 0) + 1
            if count >= self._cap:
                self._full.add(worker)
                self._usableFrom = None
                ready = None
        for worker, batch in batches.items():
            worker.send(batch)

    def _holdFull(self, connections: list[Connection], peers: list[Any]) -> None:
        """
        Hold C{connections}: no worker has room (or none is ready).  Those
        held because every ready worker is at its cap are counted in
        L{capped}, and the start of such an episode is logged once.
        """
        kept = self._hold(connections, peers)
        if self._releasing or not (self._full and self._readyWorkers()):
            return
        self.capped += kept
        if self._capEpisode is None:
            self._capEpisode = 0
            log.warn(
                "every ready worker has {cap} connections open (--worker-connections): "
                "new connections wait in the master",
                cluster_event=logevents.WORKERS_AT_CAPACITY,
                cap=self._cap,
                workers=len(self._full),
            )
        self._capEpisode += kept

    def _closedIn(self, process: IWorkerProcess, count: int) -> None:
        """
        C{count} connections that C{process} held are gone (closed there,
        returned or taken back): under the cap, one that had none left
        takes the connections that waited.
        """
        if not self._cap or process not in self._open:
            return
        left = self._open[process] = max(self._open[process] - count, 0)
        if process in self._full and left < self._cap:
            self._full.discard(process)
            self._usableFrom = None
            if self._capEpisode is not None and not self._releasing:
                log.info(
                    "worker {worker_id} pid {worker_pid} has room again: handing out "
                    "connections that waited ({waited} waited for room)",
                    cluster_event=logevents.WORKER_ROOM_FOR_CONNECTIONS,
                    worker_id=process.workerId,
                    worker_pid=process.pid,
                    waited=self._capEpisode,
                )
                self._capEpisode = None
            self._releaseWaiting()

    def _usable(self, ready: list[IWorkerProcess]) -> list[IWorkerProcess]:
        """
        C{ready} without the workers that rest (they returned connections:
        L{workerAck}) or are at their cap (C{workerConnections}) and, unless
        every other one does too, without the stalled ones
        (L{workerStalled}): a worker whose reactor is stopped or blocked
        gets no more connections long before its health ping times out,
        and the ones it holds go to other workers if it is killed.  Kept
        until a worker's state changes.
        """
        if self._usableFrom is not ready:
            usable = [p for p in ready if p not in self._resting and p not in self._full]
            responsive = [p for p in usable if p not in self._stalled]
            self._usableWorkers = responsive or usable
            self._usableFrom = ready
        return self._usableWorkers

    def workerStalled(self, process: IWorkerProcess, stalled: bool) -> None:
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
                "worker {worker_id} pid {worker_pid} acknowledges its connections again "
                "after {stalled_for:.1f}s",
                cluster_event=logevents.WORKER_UNSTALLED,
                **workerFields(process),
                stalled_for=self._reactor.seconds() - report.getTime() + STALL_LOG_AFTER,
            )

    def _logStall(self, process: IWorkerProcess) -> None:
        handoff = process.handoff
        since = handoff.waitingSince if handoff is not None else None
        log.warn(
            "worker {worker_id} pid {worker_pid} has not acknowledged {pending} connections "
            "for {seconds:.1f}s: new connections go to the other workers",
            cluster_event=logevents.WORKER_STALLED,
            **workerFields(process),
            pending=handoff.pending if handoff is not None else 0,
            seconds=self._reactor.seconds() - since if since is not None else 0.0,
        )

    def _readyWorkers(self) -> list[IWorkerProcess]:
        """
        The workers that may take connections, without asking the supervisor
        for every batch: the list is kept until one of its workers leaves
        the ready state or a worker becomes ready (L{workerReady}).
        """
        ready = self._ready
        for process in ready:
            if process.state != READY:
                break
        else:
            if ready:
                return ready
        ready = self._ready = self._allReady()
        return ready

    def _hold(self, connections: list[Connection], peers: list[Any]) -> int:
        """
        No worker is ready: keep accepting, and keep the connections until
        one is (L{workerReady}), up to C{queueLimit}; close those past the
        limit and count them in L{dropped}.

        @return: how many were kept.
        """
        room = max(self._queueLimit - len(self._waiting), 0)
        for fd, _ in connections[room:]:
            os.close(fd)
        dropped = max(len(connections) - room, 0)
        if dropped and not self._droppedWaiting:
            log.warn(
                "no worker ready and {limit} connections waiting (--queue-limit): "
                "closing new ones until a worker is ready",
                cluster_event=logevents.QUEUE_FULL,
                limit=self._queueLimit,
            )
        self.dropped += dropped
        self._droppedWaiting += dropped
        self._waiting.extend(zip(connections[:room], peers[:room]))
        return min(room, len(connections))

    def workerAck(
        self, process: IWorkerProcess, taken: int, closed: int, returned: list[Connection]
    ) -> None:
        """
        An acknowledgement from C{process} (see L{twisted_cluster._contract.handoff}).
        Connections it returned go to other workers (or wait for one), and
        it gets none for L{REFUSAL_REST} seconds or until it reports closes.
        """
        if closed:
            self._policy.closed(process, closed)
            self._closedIn(process, closed)
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
                    "worker {worker_id} pid {worker_pid} takes connections again "
                    "({refused_total} returned meanwhile)",
                    cluster_event=logevents.WORKER_ROOM_AGAIN,
                    **workerFields(process),
                    refused_total=refusals.count,
                )

    def _refused(self, process: IWorkerProcess, connections: list[Connection]) -> None:
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
        self._closedIn(process, count)
        refusals = self._refusals.get(process)
        if refusals is None:
            self._refusals[process] = _Refusals(count, now)
            log.warn(
                "worker {worker_id} pid {worker_pid} could not take {refused} connections "
                "(out of file descriptors): handing them to other workers, and "
                "none to it until it closes some",
                cluster_event=logevents.WORKER_FULL,
                **workerFields(process),
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
        self.dispatch(connections, [None] * count)

    def _rested(self, process: IWorkerProcess) -> None:
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
        self._releaseWaiting()

    def _releaseWaiting(self) -> None:
        """
        Dispatch the connections that waited for a worker, oldest first.
        """
        if self._waiting and not self._releasing:
            waiting = list(self._waiting)
            self._waiting.clear()
            self._releasing = True
            try:
                self.dispatch([c for c, _ in waiting], [peer for _, peer in waiting])
            finally:
                self._releasing = False

    def workerReclaimed(
        self, process: IWorkerProcess, connections: list[Connection]
    ) -> None:
        """
        C{process} stalled before it received C{connections}, and the master
        took them back from its hand-off channel: they go to the other
        workers now, instead of waiting for it to resume or be killed.
        """
        count = len(connections)
        self._policy.closed(process, count)
        self._closedIn(process, count)
        self.redispatched += count
        self.dispatch(connections, [None] * count)

    def workerLost(self, process: IWorkerProcess, connections: list[Connection]) -> None:
        self._policy.forget(process)
        for calls in (self._stalled, self._resting):
            call = calls.pop(process, None)
            if call is not None and call.active():
                call.cancel()
        self._refusals.pop(process, None)
        self._open.pop(process, None)
        self._full.discard(process)
        self._usableFrom = None
        handoff = process.handoff
        if handoff is not None and handoff.closedWithWorker:
            log.info(
                "worker {worker_id} pid {worker_pid} died with {count} connections it had "
                "received: they are closed",
                cluster_event=logevents.CONNECTIONS_CLOSED,
                **workerFields(process),
                count=handoff.closedWithWorker,
            )
        if not connections:
            return
        self.redispatched += len(connections)
        log.warn(
            "worker {worker_id} pid {worker_pid} left {count} connections unadopted: "
            "handing them to other workers",
            cluster_event=logevents.CONNECTIONS_REDISPATCHED,
            **workerFields(process),
            count=len(connections),
        )
        self._reactor.callLater(0, self.dispatch, connections, [None] * len(connections))
