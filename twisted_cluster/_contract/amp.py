"""
The AMP protocol class both ends of the control channel build on.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from twisted_cluster import logevents

log = Logger()

#: The most bytes one AMP box may take on the control channel (keys, values
#: and their length prefixes).  AMP bounds each value (65,535 bytes) but not
#: the number of keys, which L{twisted_cluster.BigBytes} values use to be
#: large: without a bound, a worker could make the master hold any amount.
#: 64 MiB is four times the largest message the documentation measures.
MAX_BOX_SIZE = 64 * 1024 * 1024


class ControlAMP(amp.AMP):
    """
    AMP that also answers the app's own commands, does not log every
    connection (a cluster opens one per worker, they are not news), and
    closes the channel on a box larger than L{maxBoxSize}.

    Built-in responders (on the subclass) come first; a command they do not
    know goes to C{appLocator}, the application's own L{amp.CommandLocator}.

    @ivar maxBoxSize: the most bytes one box received may take.
    """

    maxBoxSize = MAX_BOX_SIZE

    def __init__(self, appLocator: Any = None) -> None:
        super().__init__()
        self.appLocator = appLocator
        self._boxSize = 0
        self._overLimit = False

    def logFields(self) -> dict[str, Any]:
        """
        The fields that name the other end in this channel's log events.
        """
        return {}

    def stringReceived(self, string: bytes) -> None:
        if self._overLimit:
            return
        self._boxSize += len(string) + 2
        if self._boxSize > self.maxBoxSize:
            self._overLimit = True
            self._currentBox = None
            log.error(
                "closing the control channel: a box over {limit} bytes arrived",
                cluster_event=logevents.CONTROL_BOX_TOO_LARGE,
                limit=self.maxBoxSize,
                **self.logFields(),
            )
            if self.transport is not None:
                self.transport.loseConnection()
            return
        if not string and self.state != "value":
            # An empty key ends the box (an empty value does not).
            self._boxSize = 0
        super().stringReceived(string)

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


class ChannelFactory(ServerFactory):
    """
    The factory of the one connection a control channel is, on either
    side: it builds no protocol but C{control}, made beforehand.
    """

    def __init__(self, control: ControlAMP) -> None:
        self._control = control

    def buildProtocol(self, addr: IAddress | None) -> ControlAMP:
        return self._control
