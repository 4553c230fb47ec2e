"""
Apps whose metrics a security review found could hurt the master, for
L{tests.test_appmetrics_bounds_live}:

  - C{conflicting}: a counter C{dup} (sample C{dup_total}) and a gauge
    C{dup_total} from a collector of the app's (a registry refuses them,
    a collector of one's own does not), which would give the exposition
    two families of one name;
  - C{raising}: a registry whose collector raises at every scrape, with a
    line break in its text.
"""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.web.resource import Resource

from twisted_cluster import ClusterApp


class Page(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"ok"


class _Colliding:
    def collect(self):
        yield CounterMetricFamily("dup", "A counter.", value=3)
        yield GaugeMetricFamily("dup_total", "A gauge named like the counter's sample.", value=9)
        yield GaugeMetricFamily("app_fine", "A family of its own.", value=1)


conflicting = ClusterApp(app=Page(), metricsRegistry=_Colliding())


class _Raising:
    def collect(self):
        raise RuntimeError("boom\nsecond line")


raising = ClusterApp(app=Page(), metricsRegistry=_Raising())
