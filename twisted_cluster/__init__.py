"""
twisted-cluster: one master process owns the listening sockets and hands
each accepted connection to one of N worker processes.

Run it with C{twist cluster --workers 4 --app mymod.resource}, or use
L{ClusterService} from your own code and tests.  The helpers for testing an
app live in L{twisted_cluster.testing} (they need trial's in-memory
transports, which a production import should not pull in); the control
command line is C{python -m twisted_cluster.ctl}.
"""

from twisted_cluster.apploading import AppLoadError, loadApp
from twisted_cluster.arguments import BigBytes, BigUnicode
from twisted_cluster.clusterapp import ClusterApp
from twisted_cluster.config import ClusterConfig
from twisted_cluster.contexts import IMasterContext, IWorkerContext
from twisted_cluster.dispatch import (
    IDispatchPolicy,
    LeastConnections,
    RoundRobin,
    SharedListeners,
    Sticky,
)
from twisted_cluster.errors import (
    NoSuchWorker,
    ValueTooLong,
    WorkerGone,
    WorkerUnavailable,
)
from twisted_cluster.master import ClusterService

__all__ = [
    "AppLoadError",
    "BigBytes",
    "BigUnicode",
    "ClusterApp",
    "ClusterConfig",
    "ClusterService",
    "IDispatchPolicy",
    "IMasterContext",
    "IWorkerContext",
    "LeastConnections",
    "NoSuchWorker",
    "RoundRobin",
    "SharedListeners",
    "Sticky",
    "ValueTooLong",
    "WorkerGone",
    "WorkerUnavailable",
    "loadApp",
]
