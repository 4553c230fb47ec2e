"""
One twisted.web process serving L{benchmarks.hello.resource}: the baseline
that C{twist cluster} is compared with.

C{python -m benchmarks.single [PORT]} listens on 127.0.0.1 (port 0 by
default) and prints C{listening on PORT} once it is bound.  The site has
no access log, like the cluster's workers (L{twisted_cluster.apploading.quietSite}),
so that both do the same work per request.
"""

import sys

from twisted.internet import reactor

from benchmarks.hello import resource
from twisted_cluster.apploading import quietSite


def main(argv: list[str]) -> None:
    port = reactor.listenTCP(  # type: ignore[attr-defined]
        int(argv[1]) if len(argv) > 1 else 0, quietSite(resource), interface="127.0.0.1"
    )
    print(f"listening on {port.getHost().port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv)
