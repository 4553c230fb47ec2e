"""
The page a cluster serves when no C{--app} is given: which worker answered,
and the workers the master knows.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from twisted_cluster._contract.commands import ListWorkers

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>twisted-cluster</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .8em}}.me{{background:#dfd}}</style>
</head><body>
<h1>twisted-cluster is running</h1>
<p>This page was served by <b>worker {workerId}</b> (pid {pid}).
Reload it to see the next worker answer.</p>
<table><tr><th>worker</th><th>pid</th><th>state</th><th>restarts</th></tr>
{rows}
</table>
<p>Serve your own app with <code>twist cluster --app mymodule.resource</code>.</p>
</body></html>
"""


class ClusterPage(Resource):
    """
    The built-in page.  The header C{X-Cluster-Worker} names the worker that
    answered, for scripts and tests.
    """

    isLeaf = True

    def __init__(self, context: Any) -> None:
        """
        @param context: the worker (it has C{workerId} and C{callMaster}).
        """
        super().__init__()
        self._context = context

    def render_GET(self, request: Request) -> Any:
        request.setHeader(b"X-Cluster-Worker", str(self._context.workerId).encode())
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        d = self._context.callMaster(ListWorkers)
        d.addCallback(lambda answer: json.loads(answer["workers"]))
        d.addErrback(lambda _: [])
        d.addCallback(self._render, request)
        return NOT_DONE_YET

    def _render(self, workers: list[dict[str, Any]], request: Request) -> None:
        me = self._context.workerId
        rows = "\n".join(
            f'<tr class="{"me" if w["id"] == me and w["pid"] == os.getpid() else ""}">'
            f"<td>{w['id']}</td><td>{w['pid']}</td>"
            f"<td>{html.escape(str(w['state']))}</td><td>{w['restarts']}</td></tr>"
            for w in workers
        )
        page = _PAGE.format(workerId=me, pid=os.getpid(), rows=rows)
        if not request.finished and not request._disconnected:
            request.write(page.encode("utf-8"))
            request.finish()


def clusterPage(context: Any) -> ClusterPage:
    """
    The built-in app, for the worker C{context}.
    """
    return ClusterPage(context)
