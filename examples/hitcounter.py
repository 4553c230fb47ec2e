"""
A cluster-wide hit counter, with a banner that every worker caches.

Run it from the repository root:

    twist cluster --workers 4 --app examples.hitcounter.app

and try it:

    curl http://127.0.0.1:8080/hello          # Welcome! /hello: 1 hit ... worker 1
    curl http://127.0.0.1:8080/hello          # Welcome! /hello: 2 hits ... worker 2
    curl -d 'Happy Friday!' http://127.0.0.1:8080/_banner
    curl http://127.0.0.1:8080/_worker/3      # worker 3, asked by another worker

What it shows, one command each:

  - L{Hit} (worker -> master): the count lives in the master, so it is one
    count for the whole cluster, whichever worker serves the request.
  - L{GetBanner} (worker -> master): each worker fetches the banner once and
    caches it.
  - L{SetBanner} (worker -> master) and L{ClearCache} (master -> every
    worker, by broadcast): a new banner clears every worker's cache.  An
    empty banner is refused with the typed error L{EmptyBanner}.  The banner
    is a L{BigUnicode}: it may be larger than AMP's 64 KiB per value.
  - L{WorkerStatus} (worker -> worker, relayed by the master).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Coroutine

from twisted.internet.defer import Deferred
from twisted.protocols import amp
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from twisted_cluster import (
    BigUnicode,
    ClusterApp,
    IMasterContext,
    IWorkerContext,
    NoSuchWorker,
)

# The protocol: worker -> master


class EmptyBanner(Exception):
    """
    The banner cannot be empty.
    """


class Hit(amp.Command):
    """
    Count one hit of C{path}; answer the cluster-wide count for it.
    """

    arguments = [(b"path", amp.Unicode())]
    response = [(b"hits", amp.Integer())]


class GetBanner(amp.Command):
    """
    The current banner.
    """

    arguments: list = []
    response = [(b"banner", BigUnicode())]


class SetBanner(amp.Command):
    """
    Change the banner; answer how many workers cleared their cache.
    """

    arguments = [(b"banner", BigUnicode())]
    response = [(b"workers", amp.Integer())]
    errors = {EmptyBanner: b"EMPTY_BANNER"}


# The protocol: master -> worker, worker -> worker


class ClearCache(amp.Command):
    """
    Forget the cached banner; answer whether there was one.
    """

    arguments: list = []
    response = [(b"cleared", amp.Boolean())]


class WorkerStatus(amp.Command):
    """
    A worker's own figures.
    """

    arguments: list = []
    response = [
        (b"worker", amp.Integer()),
        (b"served", amp.Integer()),
        (b"cached", amp.Boolean()),
    ]


# The master


class HitCounter(amp.CommandLocator):
    """
    The master's responders: the counts and the banner, for the whole cluster.
    """

    def __init__(self, master: IMasterContext) -> None:
        self.master = master
        self.hits: Counter[str] = Counter()
        self.banner = "Welcome!"

    @Hit.responder
    def hit(self, path: str) -> dict[str, Any]:
        self.hits[path] += 1
        return {"hits": self.hits[path]}

    @GetBanner.responder
    def getBanner(self) -> dict[str, Any]:
        return {"banner": self.banner}

    @SetBanner.responder
    async def setBanner(self, banner: str) -> dict[str, Any]:
        if not banner.strip():
            raise EmptyBanner("the banner cannot be empty")
        self.banner = banner
        answers = await self.master.broadcast(ClearCache, timeout=5)
        return {"workers": sum(isinstance(a, dict) for a in answers.values())}


# A worker


class HitCounterPage(Resource):
    """
    One worker's web app.

    @ivar cachedBanner: this worker's copy of the banner (C{None}: not
        fetched yet, or cleared).
    @ivar served: requests this worker served.
    """

    isLeaf = True

    def __init__(self, context: IWorkerContext) -> None:
        super().__init__()
        self.context = context
        self.cachedBanner: str | None = None
        self.served = 0

    async def banner(self) -> str:
        """
        The banner, from the cache or else from the master.
        """
        if self.cachedBanner is None:
            self.cachedBanner = (await self.context.callMaster(GetBanner))["banner"]
        return self.cachedBanner

    def render_GET(self, request: Request) -> Any:
        self.served += 1
        path = request.path.decode("utf-8", "replace")
        if path.startswith("/_worker/"):
            return self._respond(request, self._peer(request, path.rsplit("/", 1)[1]))
        return self._respond(request, self._count(path))

    def render_POST(self, request: Request) -> Any:
        if request.path != b"/_banner":
            request.setResponseCode(404)
            return b"POST /_banner to change the banner\n"
        text = request.content.read().decode("utf-8", "replace")
        return self._respond(request, self._setBanner(request, text))

    async def _count(self, path: str) -> str:
        banner = await self.banner()
        hits = (await self.context.callMaster(Hit, path=path))["hits"]
        noun = "hit" if hits == 1 else "hits"
        return f"{banner}\n{path}: {hits} {noun} in the cluster\n"

    async def _setBanner(self, request: Request, text: str) -> str:
        try:
            answer = await self.context.callMaster(SetBanner, banner=text)
        except EmptyBanner as e:
            request.setResponseCode(400)
            return f"{e}\n"
        return f"banner set; {answer['workers']} workers cleared their cache\n"

    async def _peer(self, request: Request, workerId: str) -> str:
        try:
            status = await self.context.callWorker(int(workerId), WorkerStatus)
        except (ValueError, NoSuchWorker) as e:
            request.setResponseCode(404)
            return f"{e}\n"
        cached = "cached" if status["cached"] else "not cached"
        return (
            f"worker {status['worker']}: {status['served']} requests served, "
            f"banner {cached}\n"
        )

    def _respond(self, request: Request, work: Coroutine[Any, Any, str]) -> Any:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"X-Cluster-Worker", str(self.context.workerId).encode())

        def done(text: str) -> None:
            if not request._disconnected:
                request.write(text.encode("utf-8"))
                request.finish()

        d = Deferred.fromCoroutine(work)
        d.addCallback(done)
        d.addErrback(request.processingFailed)
        return NOT_DONE_YET


class PageResponders(amp.CommandLocator):
    """
    One worker's responders: they act on its page (C{context.app}).
    """

    def __init__(self, context: IWorkerContext) -> None:
        self.context = context
        self.page: HitCounterPage = context.app

    @ClearCache.responder
    def clearCache(self) -> dict[str, Any]:
        cleared = self.page.cachedBanner is not None
        self.page.cachedBanner = None
        return {"cleared": cleared}

    @WorkerStatus.responder
    def status(self) -> dict[str, Any]:
        return {
            "worker": self.context.workerId,
            "served": self.page.served,
            "cached": self.page.cachedBanner is not None,
        }


#: What C{--app examples.hitcounter.app} names.
app = ClusterApp(
    app=HitCounterPage,
    workerResponders=PageResponders,
    masterResponders=HitCounter,
)
