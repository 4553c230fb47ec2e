"""
An app whose worker writes, on request, what a hostile or broken worker
might: C{/stdout?mb=N} writes N MiB to stdout without a newline, then
answers.
"""

import os

from twisted.web.resource import Resource


class Flood(Resource):
    isLeaf = True

    def render_GET(self, request):
        mib = int(request.args.get(b"mb", [b"1"])[0])
        chunk = b"x" * (1 << 20)
        for _ in range(mib):
            os.write(1, chunk)
        return b"written"


resource = Flood()
