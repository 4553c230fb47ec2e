"""
The app of L{benchmarks.appmetrics}: a page that counts in a few hundred
C{prometheus_client} series of the default registry, about what a real
service publishes (counters by route and status, latency histograms,
gauges).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from twisted.web.resource import Resource

ROUTES = [f"/route{n}" for n in range(10)]
STATUSES = ("200", "404", "500")

#: 10 routes x 3 statuses = 30 series.
REQUESTS = Counter("bench_requests", "Requests by route and status.", ["route", "status"])
#: 10 routes x (12 buckets + count + sum) = 140 series.
LATENCY = Histogram("bench_latency_seconds", "Latency by route.", ["route"])
#: 100 gauges.
QUEUES = Gauge("bench_queue_depth", "Depth of each queue.", ["queue"])
#: 30 counters without labels.
EVENTS = [Counter(f"bench_events_{n}", f"Events of kind {n}.") for n in range(30)]

for route in ROUTES:
    LATENCY.labels(route=route).observe(0.01)
    for status in STATUSES:
        REQUESTS.labels(route=route, status=status).inc()
for queue in range(100):
    QUEUES.labels(queue=str(queue)).set(queue)
for event in EVENTS:
    event.inc()


class Page(Resource):
    isLeaf = True

    def render_GET(self, request: object) -> bytes:
        REQUESTS.labels(route="/route0", status="200").inc()
        return b"ok"


resource = Page()
