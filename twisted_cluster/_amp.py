"""
The AMP protocol class both ends of the control channel build on.
"""

from __future__ import annotations

from typing import Any

from twisted.protocols import amp


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
        self._transportPeer = transport.getPeer()
        self._transportHost = transport.getHost()
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionLost(self, reason: Any) -> None:
        amp.BinaryBoxProtocol.connectionLost(self, reason)
        self.transport = None
