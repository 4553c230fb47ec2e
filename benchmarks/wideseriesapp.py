"""
The app of C{benchmarks.appmetrics --app benchmarks.wideseriesapp.resource}:
what the security review used to stall the master, 19,000 gauge samples
per worker with labels of about 110 bytes each (within a worker's
bounds: 20,000 samples, 4 MiB), or C{BENCH_WIDE_SERIES} of them (the
workers inherit the environment of the C{twist cluster} the benchmark
starts).
"""

from __future__ import annotations

import os

from prometheus_client import Gauge
from twisted.web.resource import Resource

#: Samples of the one wide family.
SERIES = int(os.environ.get("BENCH_WIDE_SERIES", "19000"))

WIDE = Gauge("bench_wide", "Gauges with long labels.", ["key", "detail"])

for n in range(SERIES):
    WIDE.labels(key=f"k{n:05d}", detail="d" * 100).set(n)


class Page(Resource):
    isLeaf = True

    def render_GET(self, request: object) -> bytes:
        return b"ok"


resource = Page()
