"""
The C{cluster} plugin for C{twist} and C{twistd}.
"""

from twisted.application.service import ServiceMaker

cluster = ServiceMaker(
    "twisted-cluster",
    "twisted_cluster.tap",
    "Run a master and N worker processes that share the listening sockets.",
    "cluster",
)
