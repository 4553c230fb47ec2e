"""
twisted-cluster: one master process owns the listening sockets and hands
each accepted connection to one of N worker processes.

Run it with C{twist cluster --workers 4 --app mymod.resource}, or use
L{ClusterService} from your own code and tests.  The helpers for testing an
app live in L{twisted_cluster.testing} (they need trial's in-memory
transports, which a production import should not pull in); the control
command line is C{python -m twisted_cluster.ctl}.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Each public name and the module that defines it.  They are imported on
#: first use (PEP 562), so that a worker process, which imports
#: C{twisted_cluster._worker.runtime} through this package, loads only the modules
#: it runs: not the master, its control site or prometheus_client.
_PUBLIC = {
    "AppLoadError": "apploading",
    "loadApp": "apploading",
    "BigBytes": "arguments",
    "BigUnicode": "arguments",
    "ClusterApp": "clusterapp",
    "ClusterConfig": "_master.config",
    "BroadcastAnswers": "contexts",
    "IMasterContext": "contexts",
    "MasterContextProtocol": "contexts",
    "WorkerContextProtocol": "contexts",
    "IWorkerContext": "contexts",
    "IDispatchPolicy": "_master.dispatch",
    "LeastConnections": "_master.dispatch",
    "RoundRobin": "_master.dispatch",
    "SharedListeners": "_master.dispatch",
    "Sticky": "_master.dispatch",
    "CallTimedOut": "errors",
    "ClusterFailed": "errors",
    "NoSuchWorker": "errors",
    "ValueTooLong": "errors",
    "WorkerGone": "errors",
    "WorkerUnavailable": "errors",
    "ClusterService": "_master.service",
    "IMasterEvents": "lifecycle",
    "IWorkerHooks": "lifecycle",
    "MasterEvents": "lifecycle",
    "WorkerEvent": "lifecycle",
    "WorkerHooks": "lifecycle",
}

__all__ = [
    "AppLoadError",
    "BigBytes",
    "BigUnicode",
    "BroadcastAnswers",
    "CallTimedOut",
    "ClusterApp",
    "ClusterConfig",
    "ClusterFailed",
    "ClusterService",
    "IDispatchPolicy",
    "IMasterContext",
    "IMasterEvents",
    "IWorkerContext",
    "IWorkerHooks",
    "LeastConnections",
    "MasterContextProtocol",
    "MasterEvents",
    "NoSuchWorker",
    "RoundRobin",
    "SharedListeners",
    "Sticky",
    "ValueTooLong",
    "WorkerContextProtocol",
    "WorkerEvent",
    "WorkerGone",
    "WorkerHooks",
    "WorkerUnavailable",
    "loadApp",
]

if TYPE_CHECKING:
    from twisted_cluster._master.config import ClusterConfig
    from twisted_cluster._master.dispatch import (
        IDispatchPolicy,
        LeastConnections,
        RoundRobin,
        SharedListeners,
        Sticky,
    )
    from twisted_cluster._master.service import ClusterService
    from twisted_cluster.apploading import AppLoadError, loadApp
    from twisted_cluster.arguments import BigBytes, BigUnicode
    from twisted_cluster.clusterapp import ClusterApp
    from twisted_cluster.contexts import (
        BroadcastAnswers,
        IMasterContext,
        IWorkerContext,
        MasterContextProtocol,
        WorkerContextProtocol,
    )
    from twisted_cluster.errors import (
        CallTimedOut,
        ClusterFailed,
        NoSuchWorker,
        ValueTooLong,
        WorkerGone,
        WorkerUnavailable,
    )
    from twisted_cluster.lifecycle import (
        IMasterEvents,
        IWorkerHooks,
        MasterEvents,
        WorkerEvent,
        WorkerHooks,
    )


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'twisted_cluster' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"twisted_cluster.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))

