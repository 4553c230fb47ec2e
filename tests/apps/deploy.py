"""
Apps for the deployment tests: they report what the worker sees of the
connection (client address, TLS) and of its process (pid, uid, gid).
"""

import json
import os

from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET


class PeerPage(Resource):
    """
    Answers every GET with a JSON document: the client's address as the
    app sees it, whether the connection is TLS, and the worker's pid, uid
    and gid.  With C{?delay=S}, answers after S seconds (a request in
    flight).
    """

    isLeaf = True

    def render_GET(self, request):
        delay = float(request.args.get(b"delay", [b"0"])[0])
        if delay:
            from twisted.internet import reactor

            def answer():
                request.write(self._document(request))
                request.finish()

            reactor.callLater(delay, answer)
            return NOT_DONE_YET
        return self._document(request)

    def _document(self, request):
        peer = request.getClientAddress()
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({
            "host": getattr(peer, "host", None),
            "port": getattr(peer, "port", None),
            "secure": request.isSecure(),
            "pid": os.getpid(),
            "uid": os.getuid(),
            "euid": os.geteuid(),
            "gid": os.getgid(),
        }).encode()


class PeerProtocol(Protocol):
    """
    Answers the first data with the client's address as the app sees it
    (C{HOST PORT}) and closes: a plain-TCP app behind the PROXY protocol.
    (Twisted's PROXY wrapper knows the address once the header is read,
    which is after C{connectionMade}.)
    """

    def dataReceived(self, data):
        peer = self.transport.getPeer()
        self.transport.write(f"{peer.host} {peer.port}\n".encode())
        self.transport.loseConnection()


resource = PeerPage()
factory = Factory.forProtocol(PeerProtocol)
