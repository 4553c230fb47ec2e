"""
Count a worker's connections and close them gracefully when it drains.

The tracker wraps the app's factory without putting a wrapper protocol in the
data path: it hooks each protocol's C{connectionLost} once, so the cost is
paid per connection, never per byte.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IProtocolNegotiationFactory,
)
from zope.interface import alsoProvides, implementer


def _unwrapped(protocol: Any) -> Any:
    """
    The HTTP channel inside the proxy that C{twisted.web.server.Site} builds
    (C{_GenericHTTPChannelProtocol} switches between HTTP/1.1 and HTTP/2 and
    proxies only L{IProtocol}); any other protocol as it is.
    """
    return getattr(protocol, "_channel", protocol)


def isIdle(protocol: Any) -> bool:
    """
    Whether closing C{protocol}'s connection now loses no work.

    An HTTP channel between requests (a keep-alive connection) is idle; any
    other protocol is idle only if it says so with a true C{isIdle()}.
    """
    protocol = _unwrapped(protocol)
    handling = getattr(protocol, "_handlingRequest", None)
    if handling is not None:
        return not handling and not getattr(protocol, "requests", None)
    method = getattr(protocol, "isIdle", None)
    return bool(method()) if callable(method) else False


@implementer(IProtocolFactory)
class ConnectionTracker:
    """
    A factory that builds the app's protocols and keeps count of them.

    @ivar open: connections open now.
    @ivar served: connections ever built.
    """

    def __init__(
        self, factory: IProtocolFactory, onClose: Callable[[], None] = lambda: None
    ) -> None:
        """
        @param factory: the app's factory.
        @param onClose: called after each connection closes.
        """
        self.factory = factory
        if IProtocolNegotiationFactory.providedBy(factory):
            # A TLS listener negotiates ALPN with what the app speaks (a web
            # Site says http/1.1); hiding it makes the handshake fail.
            alsoProvides(self, IProtocolNegotiationFactory)
            self.acceptableProtocols = factory.acceptableProtocols
        self._onClose = onClose
        self._protocols: set[IProtocol] = set()
        self._fresh: set[IProtocol] = set()
        self.served = 0

    @property
    def open(self) -> int:
        return len(self._protocols)

    def doStart(self) -> None:
        self.factory.doStart()

    def doStop(self) -> None:
        self.factory.doStop()

    def buildProtocol(self, addr: IAddress) -> IProtocol | None:
        protocol = self.factory.buildProtocol(addr)
        if protocol is None:
            return None
        self.served += 1
        self._protocols.add(protocol)
        appLost = protocol.connectionLost
        protocols = self._protocols
        fresh = self._fresh
        fresh.add(protocol)
        appReceived = protocol.dataReceived

        def firstDataReceived(data: bytes) -> None:
            # Paid once per connection: then the app's own method again.
            fresh.discard(protocol)
            protocol.dataReceived = appReceived  # type: ignore[method-assign]
            appReceived(data)

        protocol.dataReceived = firstDataReceived  # type: ignore[method-assign]

        def connectionLost(reason: Any) -> None:
            protocols.discard(protocol)
            fresh.discard(protocol)
            try:
                appLost(reason)
            finally:
                self._onClose()

        protocol.connectionLost = connectionLost  # type: ignore[method-assign]
        return protocol

    def closeIdle(self, closeFresh: bool = True) -> int:
        """
        Close every idle connection; ask HTTP channels with a request in
        flight to close once it is answered.

        @param closeFresh: whether connections that never received a byte
            count as idle.  A connection adopted a moment ago has its first
            request on the way: closing it would fail that request.
        @return: how many connections are still open with work in flight.
        """
        busy = 0
        for built in list(self._protocols):
            # twisted.web's Site builds a generic wrapper that picks HTTP/1.1
            # or HTTP/2; the state lives in the channel it wraps.
            protocol = getattr(built, "_channel", built)
            transport = getattr(protocol, "transport", None)
            if transport is None:
                continue
            if isIdle(protocol) and (closeFresh or built not in self._fresh):
                transport.loseConnection()
            else:
                if hasattr(protocol, "persistent") and built not in self._fresh:
                    protocol.persistent = False
                busy += 1
        return busy
