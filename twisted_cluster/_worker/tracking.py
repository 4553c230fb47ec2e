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
    IReactorTime,
)
from zope.interface import alsoProvides, implementer


def _unwrapped(protocol: Any) -> Any:
    """
    The HTTP channel inside the proxy that C{twisted.web.server.Site} builds
    (C{_GenericHTTPChannelProtocol} switches between HTTP/1.1 and HTTP/2 and
    proxies only L{IProtocol}); any other protocol as it is.
    """
    return getattr(protocol, "_channel", protocol)


def isIdle(protocol: Any) -> bool | None:
    """
    Whether closing C{protocol}'s connection now loses no work.

    An HTTP channel between requests (a keep-alive connection) is idle; any
    other protocol is idle if it says so with a true C{isIdle()}.

    @return: C{None} for a protocol that says nothing (neither HTTP nor
        with an C{isIdle} method): only its traffic tells.
    """
    protocol = _unwrapped(protocol)
    handling = getattr(protocol, "_handlingRequest", None)
    if handling is not None:
        return not handling and not getattr(protocol, "requests", None)
    method = getattr(protocol, "isIdle", None)
    return bool(method()) if callable(method) else None


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
        self.served = 0
        #: When each protocol that says nothing of its idleness last
        #: received bytes, once L{watchActivity} was called.
        self._lastData: dict[IProtocol, float] = {}
        self._clock: IReactorTime | None = None

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
        if self._clock is not None:
            self._watch(protocol)
        appLost = protocol.connectionLost
        protocols = self._protocols
        def connectionLost(reason: Any) -> None:
            protocols.discard(protocol)
            self._lastData.pop(protocol, None)
            try:
                appLost(reason)
            finally:
                self._onClose()

        protocol.connectionLost = connectionLost  # type: ignore[method-assign]
        return protocol

    def watchActivity(self, clock: IReactorTime) -> None:
        """
        From now on, note when each protocol that says nothing of its
        idleness (L{isIdle} is C{None}: a plain protocol) receives bytes, so
        that L{closeIdle} can tell a quiet connection.  Called when the
        worker drains: the hook is paid once per connection then, and never
        per byte while the worker serves.
        """
        self._clock = clock
        for protocol in list(self._protocols):
            self._watch(protocol)

    def _watch(self, protocol: IProtocol) -> None:
        clock = self._clock
        assert clock is not None
        if protocol in self._lastData or isIdle(protocol) is not None:
            return
        lastData = self._lastData
        lastData[protocol] = clock.seconds()
        appReceived = protocol.dataReceived

        def dataReceived(data: bytes) -> None:
            lastData[protocol] = clock.seconds()
            appReceived(data)

        protocol.dataReceived = dataReceived  # type: ignore[method-assign]

    def closeAll(self) -> None:
        """
        Close every connection (the app finished its own drain).
        """
        for built in list(self._protocols):
            transport = getattr(_unwrapped(built), "transport", None)
            if transport is not None:
                transport.loseConnection()

    def closeIdle(self, closeIdleNow: bool = True, quietFor: float | None = None) -> int:
        """
        Drain the connections: every HTTP/1 channel answers its next response
        with C{Connection: close} and closes after it, so a keep-alive client
        learns to reconnect elsewhere instead of losing a request; idle
        connections are closed when C{closeIdleNow}.

        @param closeIdleNow: close the idle connections now.  Before that, a
            drain leaves them a moment to send the request that is perhaps
            on its way (closing would fail it).
        @param quietFor: close too the connections of plain protocols
            (L{isIdle} says nothing) that received nothing for this many
            seconds, as L{watchActivity} noted (C{None}: leave them open).
        @return: how many connections are still open.
        """
        remaining = 0
        now = self._clock.seconds() if self._clock is not None else 0.0
        for built in list(self._protocols):
            protocol = _unwrapped(built)
            transport = getattr(protocol, "transport", None)
            if transport is None:
                continue
            _closeAfterResponse(protocol)
            idle = isIdle(protocol)
            if idle is None and quietFor is not None and built in self._lastData:
                idle = now - self._lastData[built] >= quietFor
            if closeIdleNow and idle:
                transport.loseConnection()
            else:
                remaining += 1
        return remaining


def _closeAfterResponse(channel: Any) -> None:
    """
    Make an HTTP/1 channel close after its current or next response, and say
    so in that response (C{Connection: close}).  Other protocols are left
    alone.
    """
    if not hasattr(channel, "checkPersistence") or getattr(channel, "_draining", False):
        return
    channel._draining = True

    def checkPersistence(request: Any, version: bytes) -> bool:
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        return False

    channel.checkPersistence = checkPersistence
    requests = getattr(channel, "requests", ())
    if requests:
        # A request is in flight: its persistence was decided already.  (On
        # an idle channel this flag would make it drop the next request.)
        channel.persistent = False
    for request in requests:
        if not request.startedWriting:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
