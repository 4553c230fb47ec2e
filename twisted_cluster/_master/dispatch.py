"""
Dispatch policies: which ready worker gets the next accepted connection.

A policy sees the workers as opaque, hashable keys (the master passes its
L{WorkerProcess} objects, so that a restarted worker is a new key) and only
answers "who is next"; the master keeps the bookkeeping of who is ready and
tells the policy what it needs to know: connections that closed, workers
that are gone.  Policies are pure objects, tested without processes.

Choose one with C{twist cluster --dispatch NAME} (L{POLICIES}):

  - C{round-robin} (L{RoundRobin}, the default): each worker in turn.
  - C{least-connections} (L{LeastConnections}): the worker with the fewest
    open connections, for long-lived connections (WebSockets, streaming).
  - C{shared} (L{SharedListeners}): every worker accepts on the listening
    sockets itself and the kernel balances, like Node's C{SCHED_NONE}.
  - C{sticky} (L{Sticky}): a client address stays on one worker while that
    worker lives (sessions held in a worker's memory, socket.io polling).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable, Hashable, Sequence

from zope.interface import Attribute, Interface, implementer


class NoWorkerReady(Exception):
    """
    No worker can take a connection right now.
    """


class IDispatchPolicy(Interface):
    """
    Chooses the worker for each accepted connection.
    """

    sharesListeners = Attribute(
        """
        C{True} when the workers accept on the listening sockets themselves
        and the master only hands out what it holds (the connections left
        in the backlog at shutdown, those of a worker that died).
        """
    )

    keysOnClients = Attribute(
        """
        C{True} when C{choose} depends on the client's address: behind a
        C{haproxy:} listener the master then reads it from the PROXY header
        (L{twisted_cluster._master.proxypeek}) instead of passing the balancer's.
        Optional: a policy without it is taken as C{False}.
        """
    )

    def choose(ready: Sequence[Hashable], peer: object) -> Hashable:
        """
        Pick one of C{ready} for the next connection.  The master calls it
        once per connection, so it must be cheap.

        @param ready: the workers that may take it, in a stable order.
        @param peer: the client's address as C{accept()} returned it
            (C{None} when unknown).
        @raise NoWorkerReady: when C{ready} is empty.
        """

    def closed(worker: Hashable, count: int) -> None:
        """
        C{count} connections that C{worker} was given have closed.
        """

    def forget(worker: Hashable) -> None:
        """
        C{worker} is gone: drop what the policy remembers about it.
        """


@implementer(IDispatchPolicy)
class RoundRobin:
    """
    Each ready worker in turn, in the order of C{ready}: over any run of
    C{k * len(ready)} connections every worker gets exactly C{k}.

    Workers joining or leaving the ready list keep the rotation fair: the
    cursor remembers the last worker chosen, not a position.  While the
    list does not change, a choice costs one comparison (no scan).
    """

    sharesListeners = False
    keysOnClients = False

    def __init__(self) -> None:
        self._last: Hashable | None = None
        self._index = -1

    def choose(self, ready: Sequence[Hashable], peer: object = None) -> Hashable:
        count = len(ready)
        if not count:
            raise NoWorkerReady()
        last = self._last
        index = self._index
        if not (0 <= index < count and ready[index] == last):
            index = _position(ready, last)
        index = (index + 1) % count
        self._index = index
        chosen = self._last = ready[index]
        return chosen

    def closed(self, worker: Hashable, count: int) -> None:
        pass

    def forget(self, worker: Hashable) -> None:
        pass


def _position(ready: Sequence[Hashable], last: Hashable | None) -> int:
    """
    Where the rotation stands in C{ready}: the index of C{last}, or, when
    C{last} left, the index just before the first worker after it (so that
    that worker is next).
    """
    if last is None:
        return -1
    for i, key in enumerate(ready):
        if key == last:
            return i
    for i, key in enumerate(ready):
        if _after(key, last):
            return i - 1
    return -1


def _after(key: Hashable, last: Hashable) -> bool:
    """
    Whether C{key} comes after C{last} in the rotation: keys are compared by
    their C{workerId} when they have one (the master's worker processes),
    else by themselves; keys that do not compare come first.
    """
    try:
        return _rank(key) > _rank(last)  # type: ignore[operator]
    except TypeError:
        return False


def _rank(key: Hashable) -> object:
    return getattr(key, "workerId", key)


@implementer(IDispatchPolicy)
class SharedListeners(RoundRobin):
    """
    The workers accept for themselves: the master sends each ready worker
    its own copy of every listening socket (it adopts them with
    C{adoptStreamPort}) and the kernel spreads the connections, like Node's
    C{SCHED_NONE}.  The master accepts nothing in the normal course; what
    it still has to hand out (the backlog it accepts when stopping, the
    connections of a worker that died before adopting them) goes round-robin.

    The kernel's spread is uneven under light load (a worker that is idle
    in C{epoll_wait} tends to win); it costs the master nothing per
    connection.
    """

    sharesListeners = True


@implementer(IDispatchPolicy)
class LeastConnections:
    """
    The ready worker with the fewest open connections, ties taken in turn.

    A worker's count grows when a connection is dispatched to it (so that a
    burst accepted in one batch spreads at once, before any worker answers)
    and shrinks when the worker reports closes (its hand-off
    acknowledgements carry them, see L{twisted_cluster._contract.handoff}).  A
    worker's count is forgotten when it is gone.
    """

    sharesListeners = False
    keysOnClients = False

    def __init__(self) -> None:
        self._open: dict[Hashable, int] = {}
        self._turn = 0

    def openConnections(self, worker: Hashable) -> int:
        """
        How many of the connections given to C{worker} are still open, as
        far as the master knows.
        """
        return self._open.get(worker, 0)

    def choose(self, ready: Sequence[Hashable], peer: object = None) -> Hashable:
        count = len(ready)
        if not count:
            raise NoWorkerReady()
        counts = self._open
        # Start the scan at a rotating offset so that ties go to each
        # worker in turn, not always to the first.
        start = self._turn = (self._turn + 1) % count
        chosen = ready[start]
        fewest = counts.get(chosen, 0)
        for i in range(1, count):
            key = ready[(start + i) % count]
            n = counts.get(key, 0)
            if n < fewest:
                chosen, fewest = key, n
        counts[chosen] = fewest + 1
        return chosen

    def closed(self, worker: Hashable, count: int) -> None:
        n = self._open.get(worker)
        if n is not None:
            self._open[worker] = max(n - count, 0)

    def forget(self, worker: Hashable) -> None:
        self._open.pop(worker, None)


def _clientAddress(peer: object) -> object:
    """
    The part of a peer address that names the client: the host of a TCP
    address (its port changes with every connection), the whole address
    otherwise.
    """
    if isinstance(peer, tuple) and peer:
        return peer[0]
    return peer


def _rendezvousHash(value: object) -> int:
    """
    A well-mixed 64-bit hash of C{(client, worker)}, the same in every run.

    Python's own C{hash} of a tuple is a poor rendezvous hash: for one worker
    against another it can order every client the same way, and a worker
    object hashes by its address in memory.  The client's address and the
    worker's id go through BLAKE2b instead (once per new client; the
    choice is remembered).
    """
    client, worker = value if isinstance(value, tuple) else (value, None)
    key = f"{client!r}|{getattr(worker, 'workerId', id(worker))}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


@implementer(IDispatchPolicy)
class Sticky:
    """
    A client address (the peer's IP, not its port) goes to the same worker
    for as long as that worker lives.

    A client seen for the first time goes to the worker that wins the
    rendezvous hash of its address over the ready workers (every worker
    gets a fair share of the addresses); the choice is then remembered, so
    that a worker joining later does not take clients away from the
    others.  When a client's worker is gone (or not ready), it is hashed
    again over the remaining ones.  At most C{remember} addresses are kept,
    the least recently seen forgotten first; a forgotten client is hashed
    again, usually to the same worker.

    Connections whose peer is unknown (handed out again after a worker
    died) go round-robin.
    """

    sharesListeners = False
    keysOnClients = True

    def __init__(
        self, remember: int = 65536, hash: Callable[[object], int] | None = None
    ) -> None:
        """
        @param remember: how many client addresses to remember.
        @param hash: the hash function of the rendezvous (tests pass a
            deterministic one); by default L{_rendezvousHash}.
        """
        self._remember = remember
        self._hash = hash if hash is not None else _rendezvousHash
        self._clients: OrderedDict[object, Hashable] = OrderedDict()
        self._unknown = RoundRobin()

    def remembered(self) -> int:
        """
        How many client addresses the policy remembers now.
        """
        return len(self._clients)

    def choose(self, ready: Sequence[Hashable], peer: object = None) -> Hashable:
        if not ready:
            raise NoWorkerReady()
        if peer is None:
            return self._unknown.choose(ready)
        client = _clientAddress(peer)
        clients = self._clients
        worker = clients.get(client)
        if worker is not None and worker in ready:
            clients.move_to_end(client)
            return worker
        hash_ = self._hash
        worker = max(ready, key=lambda key: hash_((client, key)))
        clients[client] = worker
        clients.move_to_end(client)
        if len(clients) > self._remember:
            clients.popitem(last=False)
        return worker

    def closed(self, worker: Hashable, count: int) -> None:
        pass

    def forget(self, worker: Hashable) -> None:
        # Its clients are hashed again on their next connection; dropping
        # them now keeps the table from holding dead workers.
        gone = [client for client, w in self._clients.items() if w == worker]
        for client in gone:
            del self._clients[client]


#: The C{--dispatch} names and the policy each one builds.
POLICIES: dict[str, Callable[[], IDispatchPolicy]] = {
    "round-robin": RoundRobin,
    "least-connections": LeastConnections,
    "shared": SharedListeners,
    "sticky": Sticky,
}


def policyNamed(name: str) -> IDispatchPolicy:
    """
    Build the policy called C{name} on the command line.

    @raise ValueError: for an unknown name (the message lists the known ones).
    """
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(
            f"unknown dispatch policy {name!r}: choose one of {', '.join(POLICIES)}"
        ) from None
