"""
Apps of every kind C{--app} accepts, each answering with its worker's pid.
"""

import os

from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource


class PidPage(Resource):
    """
    Answers every GET with this process's pid.
    """

    isLeaf = True

    def render_GET(self, request):
        return str(os.getpid()).encode()


class PidProtocol(Protocol):
    """
    Writes this process's pid and closes.
    """

    def connectionMade(self):
        self.transport.write(str(os.getpid()).encode())
        self.transport.loseConnection()


resource = PidPage()
factory = Factory.forProtocol(PidProtocol)


def makeResource():
    return PidPage()


notAnApp = 42


def makeBroken():
    """
    A callable app that fails in every worker (the master cannot tell: it
    does not call it).
    """
    raise ValueError("the database is not there")


class LoggingPage(Resource):
    """
    Logs one event per request with twisted.logger, and prints one line.
    """

    isLeaf = True

    def render_GET(self, request):
        from twisted.logger import Logger

        Logger().info("served {path}", path=request.path.decode())
        print("printed by the app", flush=True)
        return b"logged"


logging = LoggingPage()


class FlakyFactory(Factory):
    """
    Fails to build a protocol for every other connection, the first one
    included: an app bug that hits one connection, not the worker.
    """

    protocol = PidProtocol
    built = 0

    def buildProtocol(self, addr):
        self.built += 1
        if self.built % 2:
            raise RuntimeError("no protocol for this connection")
        return super().buildProtocol(addr)


flakyFactory = FlakyFactory()
