"""
Adopting a connection the master accepted: the worker's hot path.

Twisted's C{IReactorSocket.adoptStreamConnection} duplicates the descriptor
(the caller closes the original), asks the kernel for both ends' addresses
and formats a description of the transport for every connection.  A worker
adopts every connection it serves, so for TCP it builds the transport
itself: it takes the received descriptor over as it is, asks only for the
peer's address (the protocol's C{addr}), and describes the transport only
when asked.  C{python -m benchmarks.adopt} measures both: about 15 us per
connection instead of 22 (a third less), and the received descriptor needs
no C{dup} and no C{close}.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Iterable

from twisted.internet import tcp
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IProtocolFactory,
    IReactorFDSet,
    IReactorSocket,
    ITransport,
)

_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class AdoptedConnection(tcp.Server):
    """
    The transport of a TCP connection accepted by the master: a
    L{tcp.Server} with no port of its own in this process.
    """

    def __repr__(self) -> str:
        try:
            return (
                f"<{type(self.protocol).__name__} #{self.sessionno} "
                f"on {self.getHost().port}>"
            )
        except (AttributeError, OSError):
            # A lost connection has no protocol or socket any more.
            return f"<{self.logstr} closed>"


def adoptConnection(
    reactor: IReactorSocket, fd: int, family: int, factory: IProtocolFactory, sessionno: int
) -> ITransport | None:
    """
    Serve the connected stream socket C{fd} with a protocol from C{factory}.

    The transport takes C{fd} over: the caller must not close it.  On error
    C{fd} is closed and the error raised (L{OSError} when the client is
    already gone).  Listeners of other families (C{unix:}), and reactors
    that are not L{IReactorFDSet}, go through the reactor's own
    C{adoptStreamConnection}.

    @param family: the socket's address family.
    @param sessionno: the transport's session number (its place in the
        worker's count of connections, for logs).
    @return: the transport, or C{None} when C{factory} refused the
        connection (then it is closed).
    """
    if family not in _TCP_FAMILIES or not IReactorFDSet.providedBy(reactor):
        try:
            # Twisted's reactors return the transport, which the interface
            # (and so its stubs) leaves out.
            adopt: Any = reactor.adoptStreamConnection
            return adopt(fd, family, factory)
        finally:
            os.close(fd)
    sock = socket.socket(family, socket.SOCK_STREAM, 0, fd)
    try:
        peer = sock.getpeername()
        addressType = IPv6Address if family == socket.AF_INET6 else IPv4Address
        protocol = factory.buildProtocol(addressType("TCP", *peer))
    except BaseException:
        sock.close()
        raise
    if protocol is None:
        sock.close()
        return None
    # No port of ours accepted it: Twisted's own adoption passes None too.
    transport = AdoptedConnection(
        sock, protocol, peer, None, sessionno, reactor  # type: ignore[arg-type]
    )
    protocol.makeConnection(transport)
    return transport


def immediateReader(reactor: object) -> Callable[[Iterable[ITransport]], None]:
    """
    What reads the just adopted transports' waiting bytes at once, instead
    of at the reactor's next turn; looked up once per worker.

    A client sends its request right after it connects, so by the time the
    master has accepted the connection and handed it over, the request is
    usually waiting: reading it at once saves the worker one turn of its
    reactor (an C{epoll_wait} and the dispatch around it) per connection,
    which is what a single process spends on its accept.  Only transports
    the reactor watches for reading are read (an app that paused its
    transport in C{connectionMade} is left alone), through the reactor's
    own read handling so that errors and disconnections are dealt with as
    in any turn.  Reactors without that handling (not C{poll}-like) read
    at their next turn as before: the reader does nothing.
    """
    handle = getattr(reactor, "_doReadOrWrite", None)
    reads = getattr(reactor, "_reads", None)
    readable = getattr(reactor, "_POLL_IN", None)
    if handle is None or reads is None or readable is None:
        return lambda transports: None

    def readAtOnce(transports: Iterable[ITransport]) -> None:
        for transport in transports:
            fd = transport.fileno()  # type: ignore[attr-defined]
            if fd in reads:
                handle(transport, fd, readable)

    return readAtOnce
