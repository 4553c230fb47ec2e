"""
Tests of the example app (examples/hitcounter.py), written the way a user
writes them: with the helpers of L{twisted_cluster.testing} only.
"""

from __future__ import annotations

import treq
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from examples.hitcounter import (
    EmptyBanner,
    GetBanner,
    Hit,
    SetBanner,
    WorkerStatus,
    app,
)
from twisted_cluster import NoSuchWorker
from twisted_cluster.testing import FakeCluster, startCluster


class HitCounterUnitTests(SynchronousTestCase):
    """
    The app's commands and responders, in-process (L{FakeCluster}).
    """

    def setUp(self) -> None:
        self.cluster = FakeCluster(app, workers=2)
        self.one = self.cluster.workers[1]
        self.two = self.cluster.workers[2]

    def banner(self, worker) -> str:
        return self.cluster.result(Deferred.fromCoroutine(worker.app.banner()))

    def test_hitsAreCountedOnceForTheWholeCluster(self) -> None:
        hit = lambda worker: worker.context.callMaster(Hit, path="/a")
        self.assertEqual(self.cluster.result(hit(self.one)), {"hits": 1})
        self.assertEqual(self.cluster.result(hit(self.two)), {"hits": 2})
        self.assertEqual(self.cluster.masterResponders.hits["/a"], 2)

    def test_eachWorkerFetchesTheBannerOnceAndCachesIt(self) -> None:
        self.assertEqual(self.banner(self.one), "Welcome!")
        self.cluster.masterResponders.banner = "changed behind its back"
        self.assertEqual(self.banner(self.one), "Welcome!")

    def test_newBannerClearsTheCacheOfEveryWorker(self) -> None:
        self.banner(self.one), self.banner(self.two)
        d = self.one.context.callMaster(SetBanner, banner="Hello")
        self.assertEqual(self.cluster.result(d), {"workers": 2})
        self.assertIsNone(self.two.app.cachedBanner)
        self.assertEqual(self.banner(self.two), "Hello")

    def test_bannerLargerThanOneAmpValueTravels(self) -> None:
        big = "x" * 200_000
        self.cluster.result(self.one.context.callMaster(SetBanner, banner=big))
        self.assertEqual(self.cluster.result(self.two.context.callMaster(GetBanner)), {"banner": big})

    def test_emptyBannerIsRefusedWithTypedError(self) -> None:
        d = self.one.context.callMaster(SetBanner, banner="  ")
        self.assertRaises(EmptyBanner, self.cluster.result, d)

    def test_workerAsksAnotherForItsStatus(self) -> None:
        self.banner(self.two)
        d = self.one.context.callWorker(2, WorkerStatus)
        self.assertEqual(self.cluster.result(d), {"worker": 2, "served": 0, "cached": True})

    def test_askingAWorkerThatIsGoneFails(self) -> None:
        self.cluster.kill(2)
        d = self.one.context.callWorker(2, WorkerStatus)
        self.assertRaises(NoSuchWorker, self.cluster.result, d)


class HitCounterClusterTests(TestCase):
    """
    The app in a real cluster (L{startCluster}), over HTTP with treq.
    """

    timeout = 60

    async def get(self, url: str) -> tuple[str, str]:
        response = await treq.get(url, persistent=False)
        worker = response.headers.getRawHeaders("X-Cluster-Worker")[0]
        return worker, await response.text()

    async def test_countIsSharedByEveryWorker(self) -> None:
        cluster = await startCluster(self, "examples.hitcounter.app", workers=2)
        pages = [await self.get(cluster.url + "hello") for _ in range(4)]
        self.assertEqual({worker for worker, _ in pages}, {"1", "2"})
        self.assertEqual(
            [text.splitlines()[1] for _, text in pages],
            ["/hello: 1 hit in the cluster"] + [f"/hello: {n} hits in the cluster" for n in (2, 3, 4)],
        )

    async def test_newBannerReachesEveryWorker(self) -> None:
        cluster = await startCluster(self, "examples.hitcounter.app", workers=2)
        for _ in range(2):
            await self.get(cluster.url)  # both workers cache "Welcome!"
        response = await treq.post(cluster.url + "_banner", data=b"Hello!", persistent=False)
        self.assertEqual(await response.text(), "banner set; 2 workers cleared their cache\n")
        pages = [await self.get(cluster.url) for _ in range(2)]
        self.assertEqual({worker for worker, _ in pages}, {"1", "2"})
        self.assertEqual({text.splitlines()[0] for _, text in pages}, {"Hello!"})

    async def test_emptyBannerIsABadRequest(self) -> None:
        cluster = await startCluster(self, "examples.hitcounter.app", workers=1)
        response = await treq.post(cluster.url + "_banner", data=b"", persistent=False)
        self.assertEqual(response.code, 400)
        self.assertEqual(await response.text(), "the banner cannot be empty\n")
