"""
twisted-cluster: one master process owns the listening sockets and hands
each accepted connection to one of N worker processes.

Run it with C{twist cluster --workers 4 --app mymod.resource}, or use
L{ClusterService} from your own code and tests.
"""

from twisted_cluster.apploading import AppLoadError, loadApp
from twisted_cluster.arguments import BigBytes, BigUnicode
from twisted_cluster.clusterapp import ClusterApp
from twisted_cluster.config import ClusterConfig
from twisted_cluster.contexts import IMasterContext, IWorkerContext
from twisted_cluster.dispatch import IDispatchPolicy, RoundRobin
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
    "NoSuchWorker",
    "RoundRobin",
    "ValueTooLong",
    "WorkerGone",
    "WorkerUnavailable",
    "loadApp",
]
