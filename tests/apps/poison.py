"""
An app with a poison request, for the crash-while-serving tests: C{/poison}
kills the worker that serves it on the spot (C{os._exit}, as a segfaulting
extension would), any other path answers with the worker's pid.
"""

import os

from twisted.web.resource import Resource


class PoisonPage(Resource):
    isLeaf = True

    def render_GET(self, request):
        if request.path == b"/poison":
            os._exit(70)
        return str(os.getpid()).encode()


resource = PoisonPage()
