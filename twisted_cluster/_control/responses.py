"""
How the control plane answers in JSON: status, operations, probes.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.server import Request


def jsonResponse(request: Request, document: Any, code: int = 200) -> bytes:
    """
    Answer C{request} with C{document} as JSON and status C{code}, never
    cached (every answer describes the cluster at one moment).
    """
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document, indent=1).encode("utf-8") + b"\n"
