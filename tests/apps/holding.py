"""
An app for the connection-cap test: each connection gets this worker's pid
and a newline, then stays open until the client closes it.
"""

import os

from twisted.internet.protocol import Factory, Protocol


class HoldingProtocol(Protocol):
    def connectionMade(self):
        self.transport.write(b"%d\n" % os.getpid())


factory = Factory.forProtocol(HoldingProtocol)
