"""
An app for the supervision tests: every answer is this worker's pid.

  - C{/block?s=N}: blocks the worker's reactor in C{time.sleep(N)} (a hung
    worker);
  - C{/slow?s=N}: answers after N seconds without blocking (a slow request
    in flight);
  - anything else: answers at once.
"""

import os
import time

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET


def _seconds(request) -> float:
    return float(request.args.get(b"s", [b"1"])[0])


class SleepyPage(Resource):
    isLeaf = True

    def render_GET(self, request):
        pid = str(os.getpid()).encode()
        if request.path == b"/block":
            time.sleep(_seconds(request))
        elif request.path == b"/slow":
            d = deferLater(reactor, _seconds(request), lambda: None)

            def answer(_):
                request.write(pid)
                request.finish()

            d.addCallback(answer)
            return NOT_DONE_YET
        return pid


resource = SleepyPage()
