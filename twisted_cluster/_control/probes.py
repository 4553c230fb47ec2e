"""
Liveness and readiness probes for orchestrators (Kubernetes, Nomad, a load
balancer's health check), served on the control site as C{/healthz} and
C{/readyz}.

  - C{/healthz} (liveness): the master's reactor answers.  It answers 200
    for as long as the master runs, draining included: restarting a master
    that is finishing its work in flight would lose that work.
  - C{/readyz} (readiness): 200 when at least one worker is ready and the
    cluster is not stopping, 503 otherwise.  It turns 503 the moment SIGTERM
    arrives, while the workers still finish what they have during the grace
    period, so that a Kubernetes Service (or HAProxy's C{option httpchk})
    stops sending new connections before the master stops accepting them.

Both answer a one-line JSON document and never cache.  The verdict is a
pure function (L{readiness}) of what the cluster reports, so it is tested
without processes.
"""

from __future__ import annotations

from typing import Any, Iterable

import attr
from twisted.web.resource import Resource
from twisted.web.server import Request

from twisted_cluster._control.responses import jsonResponse

#: The worker state that takes new connections (L{twisted_cluster._supervision.process.READY}).
_READY = "ready"


@attr.s(frozen=True, auto_attribs=True)
class Verdict:
    """
    A probe's answer.

    @ivar ok: whether the probe passes.
    @ivar reason: why, in a few words.
    @ivar ready: how many workers take connections.
    """

    ok: bool
    reason: str
    ready: int = 0

    def document(self) -> dict[str, Any]:
        """
        The verdict as the probe's JSON answer.
        """
        return {"ok": self.ok, "reason": self.reason, "ready_workers": self.ready}


def readiness(stopping: bool, workers: Iterable[dict[str, Any]]) -> Verdict:
    """
    Whether a cluster should get new traffic.

    @param stopping: the cluster is stopping (L{ClusterService.stopping}).
    @param workers: its worker table (L{ClusterService.workerTable}).
    """
    ready = sum(1 for worker in workers if worker.get("state") == _READY)
    if stopping:
        return Verdict(False, "stopping", ready)
    if not ready:
        return Verdict(False, "no worker ready", ready)
    return Verdict(True, "ready", ready)


class _Probe(Resource):
    """
    A probe of one cluster: answers C{GET} and C{HEAD} alike.
    """

    isLeaf = True

    def __init__(self, service: Any) -> None:
        """
        @param service: the L{ClusterService}.
        """
        super().__init__()
        self._service = service

    def render_GET(self, request: Request) -> bytes:
        raise NotImplementedError()

    def render_HEAD(self, request: Request) -> bytes:
        return self.render_GET(request)


class LivenessResource(_Probe):
    """
    C{/healthz}: 200 while the master's reactor runs.
    """

    def render_GET(self, request: Request) -> bytes:
        ready = readiness(False, self._service.workerTable()).ready
        return jsonResponse(request, Verdict(True, "alive", ready).document())


class ReadinessResource(_Probe):
    """
    C{/readyz}: 200 when the cluster takes new connections, 503 when it
    has no ready worker or is stopping.
    """

    def render_GET(self, request: Request) -> bytes:
        service = self._service
        verdict = readiness(service.stopping, service.workerTable())
        return jsonResponse(request, verdict.document(), 200 if verdict.ok else 503)


def addProbes(root: Resource, service: Any) -> None:
    """
    Put C{/healthz} and C{/readyz} for C{service} under C{root}.
    """
    root.putChild(b"healthz", LivenessResource(service))
    root.putChild(b"readyz", ReadinessResource(service))
