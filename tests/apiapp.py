"""
An application for the integration tests of the developer API: one command
in each direction, and a command that each worker answers its own way.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.protocols import amp
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from twisted_cluster import ClusterApp, IMasterContext, IWorkerContext


class Count(amp.Command):
    """Worker -> master: count one; answer the total."""

    arguments: list = []
    response = [(b"total", amp.Integer())]


class WhoAreYou(amp.Command):
    """Master or worker -> worker."""

    arguments: list = []
    response = [(b"worker", amp.Integer()), (b"pid", amp.Integer())]


class Misbehave(amp.Command):
    """Worker 1 answers, worker 2 dies, any other worker never answers."""

    arguments: list = []
    response = [(b"worker", amp.Integer())]


class Counter(amp.CommandLocator):
    def __init__(self, master: IMasterContext) -> None:
        self.master = master
        self.total = 0

    @Count.responder
    def count(self) -> dict[str, Any]:
        self.total += 1
        return {"total": self.total}


class Identity(amp.CommandLocator):
    def __init__(self, context: IWorkerContext) -> None:
        self.context = context

    @WhoAreYou.responder
    def whoAreYou(self) -> dict[str, Any]:
        return {"worker": self.context.workerId, "pid": os.getpid()}

    @Misbehave.responder
    def misbehave(self) -> Any:
        if self.context.workerId == 1:
            return {"worker": 1}
        if self.context.workerId == 2:
            os._exit(1)
        return Deferred()


class Page(Resource):
    """
    C{/count}: count in the master.  C{/relay/N}: ask worker N who it is.
    """

    isLeaf = True

    def __init__(self, context: IWorkerContext) -> None:
        super().__init__()
        self.context = context

    def render_GET(self, request: Request) -> Any:
        request.setHeader(b"X-Cluster-Worker", str(self.context.workerId).encode())
        parts = request.path.decode().strip("/").split("/")
        if parts[0] == "relay":
            d = self.context.callWorker(int(parts[1]), WhoAreYou, timeout=5)
            d.addCallback(lambda a: f"worker {a['worker']} pid {a['pid']}")
        else:
            d = self.context.callMaster(Count)
            d.addCallback(lambda a: f"total {a['total']}")
        d.addErrback(lambda f: f"error {f.type.__name__}: {f.value}")
        d.addCallback(lambda text: (request.write(text.encode()), request.finish()))
        return NOT_DONE_YET


app = ClusterApp(app=Page, workerResponders=Identity, masterResponders=Counter)


def broken(context: IWorkerContext) -> Resource:
    raise RuntimeError("this app cannot start")


badMaster = ClusterApp(app=Page, masterResponders=42)
