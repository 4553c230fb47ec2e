"""
Tests for L{twisted_cluster._control.probes}: liveness and readiness for
orchestrators, and L{ClusterService.stopping} that readiness reads.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from twisted_cluster._control.probes import (
    LivenessResource,
    ReadinessResource,
    addProbes,
    readiness,
)
from twisted_cluster._master.config import ClusterConfig
from twisted_cluster._master.service import ClusterService


class _FakeCluster:
    def __init__(self, states: list[str], stopping: bool = False) -> None:
        self.states = states
        self.stopping = stopping

    def workerTable(self) -> list[dict[str, Any]]:
        return [{"id": i, "state": s} for i, s in enumerate(self.states, 1)]


def render(resource: Resource) -> tuple[int, dict[str, Any]]:
    request = DummyRequest([b""])
    body = resource.render(request)
    return request.responseCode or 200, json.loads(body)


class ReadinessVerdictTests(SynchronousTestCase):
    def test_readyWithOneReadyWorker(self) -> None:
        """
        One ready worker is enough, whatever the others do.
        """
        verdict = readiness(False, [{"state": "starting"}, {"state": "ready"}])
        self.assertEqual((verdict.ok, verdict.reason, verdict.ready), (True, "ready", 1))

    def test_notReadyWithoutReadyWorker(self) -> None:
        """
        Workers that are starting or draining take no new connections.
        """
        verdict = readiness(False, [{"state": "starting"}, {"state": "draining"}])
        self.assertEqual((verdict.ok, verdict.reason), (False, "no worker ready"))

    def test_notReadyWhileStopping(self) -> None:
        """
        A stopping cluster is not ready even though its workers still are.
        """
        verdict = readiness(True, [{"state": "ready"}])
        self.assertEqual((verdict.ok, verdict.reason, verdict.ready), (False, "stopping", 1))


class ProbeResourceTests(SynchronousTestCase):
    def test_readyzAnswers200WhenReadyAnd503WhenStopping(self) -> None:
        """
        C{/readyz} is 200 with a ready worker, 503 once the cluster stops.
        """
        cluster = _FakeCluster(["ready"])
        code, document = render(ReadinessResource(cluster))
        self.assertEqual((code, document["ok"]), (200, True))
        cluster.stopping = True
        code, document = render(ReadinessResource(cluster))
        self.assertEqual((code, document), (503, {"ok": False, "reason": "stopping",
                                                  "ready_workers": 1}))

    def test_healthzStaysLiveWhileStopping(self) -> None:
        """
        C{/healthz} answers 200 while draining: killing a master that
        finishes its requests would lose them.
        """
        code, document = render(LivenessResource(_FakeCluster(["draining"], True)))
        self.assertEqual((code, document["ok"]), (200, True))

    def test_addProbesPutsBothUnderTheRoot(self) -> None:
        """
        L{addProbes} adds C{healthz} and C{readyz}.
        """
        root = Resource()
        addProbes(root, _FakeCluster([]))
        self.assertIsInstance(root.children[b"healthz"], LivenessResource)
        self.assertIsInstance(root.children[b"readyz"], ReadinessResource)


class StoppingTests(SynchronousTestCase):
    def test_stoppingTurnsTrueWhenStopBegins(self) -> None:
        """
        L{ClusterService.stopping} is false until C{stopService} is called,
        true from then on.
        """
        service = ClusterService(MemoryReactorClock(), ClusterConfig(workers=1, listen=()))
        self.assertFalse(service.stopping)
        service.stopService()
        self.assertTrue(service.stopping)
