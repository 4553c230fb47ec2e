"""
An app for the hung-worker test: C{/stuck} blocks the worker's reactor in
L{blocked_in_stuck_function}, while a thread of its own waits in
L{background_thread_waits}; both names must show in the master's log.
Anything else answers this worker's pid.
"""

import os
import threading
import time

from twisted.web.resource import Resource


def background_thread_waits(event: threading.Event) -> None:
    event.wait()


def blocked_in_stuck_function() -> None:
    time.sleep(120)


class StuckPage(Resource):
    isLeaf = True

    def render_GET(self, request):
        if request.path == b"/stuck":
            blocked_in_stuck_function()
        return str(os.getpid()).encode()


threading.Thread(
    target=background_thread_waits, args=(threading.Event(),), daemon=True
).start()
resource = StuckPage()
