"""
The hello-world app every server in the benchmark serves.

C{twist cluster --app benchmarks.hello.resource} serves L{resource};
L{benchmarks.single} serves the same object in one process.
"""

from twisted.web.resource import Resource
from twisted.web.server import Request

BODY = b"Hello, world!\n"


class Hello(Resource):
    """
    A leaf resource that answers every request with L{BODY}.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return BODY


resource = Hello()
