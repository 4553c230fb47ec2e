"""
Apps that count their requests with C{prometheus_client}, as one process
would, for the tests of the cluster's application metrics.

  - C{resource}: counts in C{prometheus_client}'s default registry (a
    counter by path, a gauge of requests in flight, a histogram of sizes);
    C{/?n=K} adds K to the counter instead of 1 (a quick way to count much);
  - C{named}: a L{ClusterApp} whose counter lives in a registry of its own,
    named in C{metricsRegistry};
  - C{broken}: a L{ClusterApp} whose registry's collector raises;
  - C{onThePage}: a L{ClusterApp} that names its counter for the status
    page;
  - C{notARegistry}: a L{ClusterApp} whose C{metricsRegistry} is none.
"""

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from twisted.web.resource import Resource

from twisted_cluster import ClusterApp

REQUESTS = Counter("app_requests", "Requests served.", ["path"])
IN_FLIGHT = Gauge("app_in_flight", "Requests being served.")
SIZES = Histogram("app_request_size_bytes", "Request sizes.", buckets=(10, 100, 1000))


class CountingPage(Resource):
    """
    Counts each GET and answers with this process's pid.
    """

    isLeaf = True

    def __init__(self, counter=REQUESTS):
        super().__init__()
        self._counter = counter

    def render_GET(self, request):
        with IN_FLIGHT.track_inprogress():
            amount = int(request.args.get(b"n", [b"1"])[0])
            self._counter.labels(path=request.path.decode()).inc(amount)
            SIZES.observe(len(request.uri))
            return str(os.getpid()).encode()


resource = CountingPage()

_own = CollectorRegistry()
_ownCounter = Counter("own_requests", "Requests, in the app's own registry.", ["path"],
                      registry=_own)

named = ClusterApp(app=CountingPage(_ownCounter), metricsRegistry=_own)


class _Failing:
    def collect(self):
        raise RuntimeError("this collector is broken")


_broken = CollectorRegistry()
_broken.register(_Failing())

broken = ClusterApp(app=CountingPage(), metricsRegistry=_broken)

onThePage = ClusterApp(app=resource, statusSeries=("app_requests_total",))

notARegistry = ClusterApp(app=resource, metricsRegistry="the default, please")
