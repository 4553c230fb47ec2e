"""
An app with one poison path: C{GET /poison} kills its worker on the spot
(C{os._exit}, as a segfaulting extension or a stray C{exit} would), every
other path answers like L{benchmarks.hello}.

    twist cluster --app benchmarks.poison.resource
"""

import os

from twisted.web.server import Request

from benchmarks.hello import Hello

#: The exit status of a worker that served the poison path.
POISONED = 70


class Poison(Hello):
    """
    L{Hello}, except that C{/poison} ends the worker without an answer.
    """

    def render_GET(self, request: Request) -> bytes:
        if request.path == b"/poison":
            os._exit(POISONED)
        return super().render_GET(request)


resource = Poison()
