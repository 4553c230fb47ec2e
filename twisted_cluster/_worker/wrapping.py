"""
Serve a handed-off connection the way Twisted's own port would have.

Some endpoint strings do more than bind a socket: C{ssl:...} makes the port
speak TLS, C{haproxy:...} makes it read a PROXY protocol header first.  In a
cluster the master only accepts (it listens with a placeholder factory and
never builds a protocol), so these layers belong to the worker: it wraps
the app's factory, once per listener, exactly as Twisted's port would have
wrapped it.  The TLS handshake and the PROXY header are therefore work of
the workers, never of the master's accept loop.

The worker reads the endpoint description itself, without binding
anything: parsing an C{ssl:} endpoint loads the certificate and key (before
the worker gives up root, see L{twisted_cluster._shared.privileges}); parsing a
C{systemd:} endpoint would look for descriptors that only the master
inherited, so plain socket endpoints are recognised by name and left as
they are.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IProtocolFactory, IReactorTime

from twisted_cluster._shared.endpointstrings import (
    EndpointReactor,
    endpointKind,
    explainParseError,
)

#: A function that wraps the app's factory for one listener.
FactoryWrapper = Callable[[IProtocolFactory], IProtocolFactory]


class WrappingError(Exception):
    """
    An endpoint's protocol layer cannot be set up in the worker.
    """


def _identity(factory: IProtocolFactory) -> IProtocolFactory:
    return factory


def wrapperFor(reactor: EndpointReactor, description: str) -> FactoryWrapper:
    """
    The function that turns the app's factory into the factory Twisted's
    port for C{description} would have served connections with.

      - C{ssl:...}: L{TLSMemoryBIOFactory} in server mode with the context
        factory Twisted's C{ssl} parser builds (every option Twisted knows:
        C{certKey}, C{extraCertChain}, C{dhParameters}, ...);
      - C{haproxy:INNER}: a PROXY protocol reader (Twisted's, stricter:
        L{StrictProxyFactory}) around C{INNER}'s wrapper.  For C{haproxy:ssl:...} this reads the PROXY
        header before the TLS handshake, which is what HAProxy sends
        (C{server ... ssl send-proxy-v2}); Twisted's own C{haproxy:ssl:}
        port nests them the other way round and expects the header inside
        TLS, which no proxy sends;
      - anything else (C{tcp}, C{tcp6}, C{unix}, C{systemd}, ...): the
        app's factory as it is.

    @raise WrappingError: when the TLS certificate or key cannot be loaded.
    """
    kind = endpointKind(description)
    if kind == "haproxy":
        inner = wrapperFor(reactor, description.split(":", 1)[1])
        return lambda factory: _proxyProtocol(inner(factory), reactor)
    if kind == "ssl":
        from twisted.protocols.tls import TLSMemoryBIOFactory

        contextFactory = _sslContextFactory(reactor, description)
        return lambda factory: TLSMemoryBIOFactory(contextFactory, False, factory)
    return _identity


def _proxyProtocol(factory: IProtocolFactory, clock: IReactorTime) -> IProtocolFactory:
    """
    C{factory} behind a strict PROXY protocol reader
    (L{twisted_cluster._worker.proxyheader.StrictProxyFactory}), imported only by
    workers that have a C{haproxy:} listener.
    """
    from twisted_cluster._worker.proxyheader import StrictProxyFactory

    return StrictProxyFactory(factory, clock)


def _sslContextFactory(reactor: EndpointReactor, description: str) -> Any:
    # Twisted's endpoint parser (and its plugin machinery) is loaded only by
    # workers that have a TLS listener.
    from twisted.internet.endpoints import serverFromString

    try:
        endpoint = serverFromString(reactor, description)
    except Exception as e:
        raise WrappingError(
            f"cannot set up TLS for {description!r}: {explainParseError(e)}"
        ) from e
    contextFactory = getattr(endpoint, "_sslContextFactory", None)
    if contextFactory is None:  # pragma: no cover - a Twisted we do not know
        raise WrappingError(f"cannot find the TLS context of {description!r}")
    return contextFactory
