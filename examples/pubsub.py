"""
A line-based publish/subscribe server whose rooms span every worker.

    twist cluster --workers 2 --grace-period 10 --listen tcp:8007 --app examples.pubsub.app

Then, in two terminals, C{nc 127.0.0.1 8007} (each may land on another
worker) and type:

    JOIN lobby            -> OK
    PUB lobby hello       -> OK, and every member of lobby, on any worker,
                             gets: MSG lobby hello
    STATS                 -> STATS clients=2 draining=0 exits=0 workers=2

The server may also send C{RECONNECT}: the worker you are on is leaving (a
roll-out, a removal, a stop); connect again and you land on another one.

How it is built, and what of twisted-cluster it shows:

  - publishing goes through the master (L{Publish}), which keeps a rate
    limit per room for the whole cluster (L{RoomRateLimit}, on the
    master's clock) and fans the message out to every live worker
    (L{Deliver}: fire and forget, C{requiresAnswer = False}), draining
    ones included: a client on a worker that is leaving gets every message
    until its worker closes it;
  - C{STATS} asks the master (L{Stats}), which asks every live worker
    (L{CountClients}) and counts the workers' exits it heard of
    (L{twisted_cluster.IMasterEvents});
  - the factory drains itself (L{twisted_cluster.IWorkerHooks}): it tells
    its clients to reconnect, leaves them a moment to go, closes the rest,
    and the worker exits at once instead of at the grace period.

Its tests are tests/test_example_pubsub.py.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.protocols import amp
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from twisted_cluster import (
    ClusterApp,
    MasterContextProtocol,
    MasterEvents,
    WorkerContextProtocol,
    WorkerEvent,
    WorkerHooks,
)

# The commands.


class RateLimited(Exception):
    """
    The room got more messages than the limit allows; try again later.
    """


class Publish(amp.Command):
    """
    Worker -> master: publish C{text} in C{room}.
    """

    arguments = [(b"room", amp.Unicode()), (b"text", amp.Unicode())]
    response = []
    errors = {RateLimited: b"RATE_LIMITED"}


class Deliver(amp.Command):
    """
    Master -> every worker: give C{text} to the members of C{room}.  Fire
    and forget: the master does not wait for the workers.
    """

    arguments = [(b"room", amp.Unicode()), (b"text", amp.Unicode())]
    response = []
    requiresAnswer = False


class CountClients(amp.Command):
    """
    Master -> worker: how many clients are connected to you?
    """

    arguments = []
    response = [(b"clients", amp.Integer())]


class Stats(amp.Command):
    """
    Worker -> master: the cluster's figures.
    """

    arguments = []
    response = [
        (b"clients", amp.Integer()),
        (b"workers", amp.Integer()),
        (b"draining", amp.Integer()),
        (b"exits", amp.Integer()),
    ]


# The master.


class RoomRateLimit:
    """
    At most C{rate} messages a second in each room, with bursts of
    C{burst}: a token bucket per room, on the clock it is given.
    """

    def __init__(self, clock: IReactorTime, rate: float = 100.0, burst: int = 100) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, room: str) -> bool:
        """
        Whether one more message may go to C{room} now (and count it).
        """
        now = self._clock.seconds()
        tokens, since = self._buckets.get(room, (float(self._burst), now))
        tokens = min(self._burst, tokens + (now - since) * self._rate)
        if tokens < 1:
            self._buckets[room] = (tokens, now)
            return False
        self._buckets[room] = (tokens - 1, now)
        return True


class Hub(amp.CommandLocator, MasterEvents):
    """
    The master's side: the rate limit, the fan-out, the figures.  It hears
    of the workers' life too (it is an L{twisted_cluster.MasterEvents}).

    @ivar exits: the workers' exits so far, by cause.
    """

    def __init__(self, master: MasterContextProtocol) -> None:
        self.master = master
        self.limit = RoomRateLimit(master.clock)
        self.exits: Counter[str] = Counter()

    @Publish.responder
    def publish(self, room: str, text: str) -> dict[str, Any]:
        if not self.limit.allow(room):
            raise RateLimited(f"room {room} is over its rate limit")
        self.master.broadcast(Deliver, room=room, text=text)
        return {}

    @Stats.responder
    async def stats(self) -> dict[str, Any]:
        answers = await self.master.broadcast(CountClients, timeout=2)
        counted = [a for a in answers.everyAnswer() if not isinstance(a, Failure)]
        return {
            "clients": sum(a["clients"] for a in counted),
            "workers": len(answers),
            "draining": len(answers.draining),
            "exits": sum(self.exits.values()),
        }

    def workerExited(self, event: WorkerEvent) -> None:
        self.exits[event.cause or "unknown"] += 1


# A worker.


class Client(LineReceiver):
    """
    One client: JOIN, LEAVE, PUB, STATS, one per line.
    """

    delimiter = b"\n"
    factory: "PubSubFactory"

    def connectionMade(self) -> None:
        self.rooms: set[str] = set()
        self.factory.clients.add(self)

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.clients.discard(self)
        for room in self.rooms:
            self.factory.rooms[room].discard(self)

    def say(self, text: str) -> None:
        self.sendLine(text.encode("utf-8"))

    def lineReceived(self, line: bytes) -> None:
        verb, _, rest = line.decode("utf-8", "replace").strip().partition(" ")
        room, _, text = rest.partition(" ")
        if verb == "JOIN" and room:
            self.rooms.add(room)
            self.factory.rooms[room].add(self)
            self.say("OK")
        elif verb == "LEAVE" and room:
            self.rooms.discard(room)
            self.factory.rooms[room].discard(self)
            self.say("OK")
        elif verb == "PUB" and room:
            d = self.factory.context.callMaster(Publish, room=room, text=text)
            d.addCallbacks(lambda _: self.say("OK"), self._failed)
        elif verb == "STATS":
            self.factory.context.callMaster(Stats).addCallbacks(self._stats, self._failed)
        else:
            self.say("ERR say JOIN room, LEAVE room, PUB room text or STATS")

    def _stats(self, figures: dict[str, int]) -> None:
        self.say("STATS " + " ".join(f"{k}={figures[k]}" for k in sorted(figures)))

    def _failed(self, failure: Failure) -> None:
        if failure.check(RateLimited):
            self.say("ERR rate-limited")
        else:
            self.say(f"ERR {failure.type.__name__}")


class PubSubFactory(Factory, WorkerHooks):
    """
    A worker's clients and rooms.  It drains itself (L{WorkerHooks}): on a
    drain, every client is told C{RECONNECT}, given C{goodbye} seconds to
    leave, and the rest are closed.

    @ivar goodbye: seconds clients get to reconnect elsewhere.
    """

    protocol = Client
    goodbye = 1.0

    def __init__(self, context: WorkerContextProtocol) -> None:
        self.context = context
        self.clients: set[Client] = set()
        self.rooms: defaultdict[str, set[Client]] = defaultdict(set)

    def deliver(self, room: str, text: str) -> None:
        for client in list(self.rooms.get(room, ())):
            client.say(f"MSG {room} {text}")

    async def workerDraining(self, deadline: float) -> None:
        clock = self.context.clock
        for client in list(self.clients):
            client.say("RECONNECT")
        # Leave them a moment, well before the master's deadline.
        wait = max(0.0, min(self.goodbye, deadline - clock.seconds() - 0.5))
        await deferLater(clock, wait, lambda: None)
        for client in list(self.clients):
            client.transport.loseConnection()


class Subscriber(amp.CommandLocator):
    """
    A worker's responders: deliveries and counts, on its factory.
    """

    def __init__(self, context: WorkerContextProtocol) -> None:
        self.factory: PubSubFactory = context.app

    @Deliver.responder
    def deliver(self, room: str, text: str) -> dict[str, Any]:
        self.factory.deliver(room, text)
        return {}

    @CountClients.responder
    def countClients(self) -> dict[str, Any]:
        return {"clients": len(self.factory.clients)}


app = ClusterApp(app=PubSubFactory, workerResponders=Subscriber, masterResponders=Hub)
