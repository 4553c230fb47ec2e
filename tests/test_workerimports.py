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
    "twisted_cluster._amp",
    "twisted_cluster.adoptedport",
    "twisted_cluster.adoption",
    "twisted_cluster.apploading",
    "twisted_cluster.arguments",
    "twisted_cluster.calling",
    "twisted_cluster.clusterapp",
    "twisted_cluster.commands",
    "twisted_cluster.contexts",
    "twisted_cluster.errors",
    "twisted_cluster.handoff",
    "twisted_cluster.privileges",
    "twisted_cluster.scheduling",
    "twisted_cluster.tracking",
    "twisted_cluster.worker",
    "twisted_cluster.workerlog",
    "twisted_cluster.wrapping",
}

_PROBE = (
    "import json, sys\n"
    "import twisted_cluster.worker\n"
    "print(json.dumps(sorted(sys.modules)))\n"
)


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
