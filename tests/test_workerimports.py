"""
A worker process loads only what it runs: the worker runtime, the contract
it shares with the master, and the developer API, never a master-side
module (issue 13).  Checked in a clean interpreter, as a worker starts.
"""

from __future__ import annotations

import json
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.support import ROOT

#: What a worker may load: its runtime, the contract both processes share,
#: and the developer API its app uses.
WORKER_SIDE = {
    "twisted_cluster",
    "twisted_cluster._contract",
    "twisted_cluster._contract.workerconfig",
    "twisted_cluster._shared",
    "twisted_cluster._worker",
    "twisted_cluster._contract.amp",
    "twisted_cluster._shared.adoptedport",
    "twisted_cluster._shared.endpointstrings",
    "twisted_cluster._shared.exhaustion",
    "twisted_cluster._worker.adoption",
    "twisted_cluster._worker.appmetrics",
    "twisted_cluster._contract.metricsnapshot",
    "twisted_cluster._worker.apphooks",
    "twisted_cluster._worker.draining",
    "twisted_cluster.apploading",
    "twisted_cluster.arguments",
    "twisted_cluster.calling",
    "twisted_cluster.clusterapp",
    "twisted_cluster._contract.commands",
    "twisted_cluster.contexts",
    "twisted_cluster.errors",
    "twisted_cluster.lifecycle",
    "twisted_cluster.logevents",
    "twisted_cluster._contract.handoff",
    "twisted_cluster._worker.handoffreceiver",
    "twisted_cluster._shared.privileges",
    "twisted_cluster._shared.scheduling",
    "twisted_cluster._worker.tracking",
    "twisted_cluster._worker.runtime",
    "twisted_cluster._shared.workerlog",
    "twisted_cluster._shared.ratelimit",
    "twisted_cluster._worker.wrapping",
}

_PROBE = (
    "import json, sys\n"
    "import twisted_cluster._worker.runtime\n"
    "print(json.dumps(sorted(sys.modules)))\n"
)


#: The packages that run only in the master.
MASTER_SIDE = ("twisted_cluster._master", "twisted_cluster._supervision", "twisted_cluster._control")


class WorkerImportTests(SynchronousTestCase):
    def loaded(self) -> set[str]:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True,
            text=True, timeout=60, check=True,
        ).stdout
        return set(json.loads(out))

    def test_aWorkerLoadsNoMasterSideModule(self) -> None:
        ours = {m for m in self.loaded() if m.split(".")[0] == "twisted_cluster"}
        self.assertEqual(ours - WORKER_SIDE, set())
        self.assertEqual([m for m in ours if m.startswith(MASTER_SIDE)], [])

    def test_aWorkerLoadsNeitherPrometheusNorStaticFiles(self) -> None:
        loaded = self.loaded()
        self.assertNotIn("prometheus_client", loaded)
        self.assertNotIn("twisted.web.static", loaded)

    def test_publicNamesStayImportableFromThePackage(self) -> None:
        import twisted_cluster

        for name in twisted_cluster.__all__:
            self.assertIsNotNone(getattr(twisted_cluster, name), name)
        self.assertIn("ClusterService", dir(twisted_cluster))
        with self.assertRaises(AttributeError):
            twisted_cluster.NoSuchName  # type: ignore[attr-defined]
