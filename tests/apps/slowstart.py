"""
An app for the waiting-queue test: every answer is this worker's pid, and
loading it takes C{SLOWSTART_SECONDS} (default 3) once the file named by
C{SLOWSTART_FLAG} exists, so that a test can keep the cluster without a
ready worker for a known while.
"""

import os
import time

from twisted.web.resource import Resource

_flag = os.environ.get("SLOWSTART_FLAG")
if _flag and os.path.exists(_flag):
    time.sleep(float(os.environ.get("SLOWSTART_SECONDS", "3")))


class PidPage(Resource):
    isLeaf = True

    def render_GET(self, request):
        return str(os.getpid()).encode()


resource = PidPage()
