"""
The AMP protocol class both ends of the control channel build on.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.protocols import amp
from twisted.python.failure import Failure


class ControlAMP(amp.AMP):
    """
    AMP that also answers the app's own commands and does not log every
    connection: a cluster opens one per worker, they are not news.

    Built-in responders (on the subclass) come first; a command they do not
    know goes to C{appLocator}, the application's own L{amp.CommandLocator}.
    """

    def __init__(self, appLocator: Any = None) -> None:
        super().__init__()
        self.appLocator = appLocator

    def locateResponder(self, name: bytes) -> Any:
        responder = super().locateResponder(name)
        if responder is None and self.appLocator is not None:
            responder = self.appLocator.locateResponder(name)
        return responder

    def makeConnection(self, transport: Any) -> None:
        # AMP's own, without its log line per connection.
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # AMP's own, without its log line: with no transport, a later call
        # fails with ConnectionLost, and owners see the channel closed.
        amp.BinaryBoxProtocol.connectionLost(self, reason)
        self.transport = None
