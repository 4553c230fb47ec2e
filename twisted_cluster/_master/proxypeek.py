"""
The real client behind a proxy, for a policy that keys on it.

Behind a load balancer that speaks the PROXY protocol (a C{haproxy:}
listener), every connection comes from the balancer's address; the
client's is in the PROXY header the balancer sends first, which the worker
reads.  C{--dispatch sticky} must key on that client before the worker
exists for the connection, so the master peeks at the header
(C{MSG_PEEK}: the bytes stay for the worker to read) and dispatches the
connection with the address it names.

A connection whose header has not arrived yet waits off the dispatch path
until it does, or for L{PEEK_TIMEOUT} seconds at most; then it goes out with
the address the master has (the balancer's).  Nothing is ever closed here.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_cluster._contract.handoff import Connection, HandoffReactor

#: Seconds a proxied connection may take to send its PROXY header before it
#: is dispatched without it.
PEEK_TIMEOUT = 3.0
#: Seconds between two looks at a header that arrived in part.
RETRY_PARTIAL = 0.01
#: The longest PROXY header the master needs to see: a v1 line is at most
#: 107 bytes; a v2 header's addresses end 52 bytes in (TCP over IPv6).
HEADER_MAX = 108

_V1 = b"PROXY "
_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = struct.Struct("!BBH")


class _Incomplete:
    """
    Marks a header that has not arrived whole yet.
    """

    def __repr__(self) -> str:
        return "INCOMPLETE"


#: What L{clientAddress} returns for a header that has not arrived whole.
INCOMPLETE = _Incomplete()

Peer = tuple[str, int]


def clientAddress(data: bytes) -> Peer | None | _Incomplete:
    """
    The client's (host, port) in the PROXY protocol header (v1 or v2) at
    the start of C{data}.

    @return: the address; L{INCOMPLETE} when C{data} is the beginning of a
        header; C{None} when the header names no client (C{UNKNOWN},
        C{LOCAL}, a family other than TCP over IPv4 or IPv6) or C{data} is
        no PROXY header at all (the worker's parser will refuse it).
    """
    if data.startswith(_V1) or _V1.startswith(data):
        return _clientV1(data)
    if data.startswith(_V2) or _V2.startswith(data):
        return _clientV2(data)
    return None


def _clientV1(data: bytes) -> Peer | None | _Incomplete:
    end = data.find(b"\r\n")
    if end < 0:
        return INCOMPLETE if len(data) < HEADER_MAX - 1 else None
    fields = data[:end].split(b" ")
    if len(fields) != 6 or fields[1] not in (b"TCP4", b"TCP6"):
        return None
    kind = ipaddress.IPv4Address if fields[1] == b"TCP4" else ipaddress.IPv6Address
    port = fields[4]
    # bytes.isdigit is ASCII only: no sign, no "_", no other script's digits.
    if not (port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        return None
    try:
        host = str(kind(fields[2].decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        return None
    return host, int(port)


def _clientV2(data: bytes) -> Peer | None | _Incomplete:
    start = len(_V2) + _V2_FIXED.size
    if len(data) < start:
        return INCOMPLETE
    versionCommand, family, length = _V2_FIXED.unpack_from(data, len(_V2))
    if versionCommand != 0x21:
        # LOCAL (the balancer's own health check), or not version 2.
        return None
    sizes = {0x11: 4, 0x21: 16}  # TCP over IPv4, TCP over IPv6
    size = sizes.get(family)
    if size is None or length < 2 * size + 4:
        return None
    if len(data) < start + 2 * size + 4:
        return INCOMPLETE
    host = str(ipaddress.ip_address(data[start : start + size]))
    (port,) = struct.unpack_from("!H", data, start + 2 * size)
    return host, port


def peekClient(fd: int, family: int) -> Peer | None | _Incomplete:
    """
    Look at what the client sent on C{fd} so far, without consuming it.

    @return: as L{clientAddress}; C{None} also when the connection is
        closed or broken (the worker will find out).
    """
    sock = socket.socket(family, socket.SOCK_STREAM, 0, fd)
    try:
        data = sock.recv(HEADER_MAX, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return INCOMPLETE
    except OSError:
        return None
    finally:
        sock.detach()
    return clientAddress(data) if data else None


Dispatch = Callable[[list[Connection], list[Any]], None]


@implementer(IReadDescriptor)
class _Waiting:
    """
    One connection whose header has not arrived: the reactor says when
    its first bytes do.
    """

    def __init__(self, peeker: "HeaderPeeker", connection: Connection, peer: Any) -> None:
        self.peeker = peeker
        self.connection = connection
        self.peer = peer
        self.reading = False
        self.retry: IDelayedCall | None = None
        self.giveUp: IDelayedCall | None = None

    def fileno(self) -> int:
        return self.connection[0]

    def logPrefix(self) -> str:
        return "HeaderPeeker"

    def doRead(self) -> None:
        self.peeker._look(self)

    def connectionLost(self, reason: Failure) -> None:
        self.peeker._release(self, self.peer)


class HeaderPeeker:
    """
    Passes a proxied listener's connections on to C{dispatch} with the
    client address of their PROXY header in place of the balancer's.

    @ivar waiting: how many connections wait for their header now.
    """

    def __init__(
        self, reactor: HandoffReactor, family: int, dispatch: Dispatch,
        timeout: float = PEEK_TIMEOUT,
    ) -> None:
        """
        @param reactor: an L{IReactorFDSet} and L{IReactorTime}.
        @param family: the listener's address family.
        @param dispatch: called with connections and their peers, like the
            master's own dispatch.
        @param timeout: seconds a connection may wait for its header.
        """
        self._reactor = reactor
        self._family = family
        self._dispatch = dispatch
        self._timeout = timeout
        self._waiting: dict[int, _Waiting] = {}

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def accepted(self, connections: list[Connection], peers: list[Any]) -> None:
        """
        Dispatch the connections whose header is there; hold the others.
        """
        ready: list[Connection] = []
        clients: list[Any] = []
        for connection, peer in zip(connections, peers):
            client = peekClient(connection[0], self._family)
            if client is INCOMPLETE:
                self._hold(connection, peer)
            else:
                ready.append(connection)
                clients.append(client or peer)
        if ready:
            self._dispatch(ready, clients)

    def flush(self) -> None:
        """
        Dispatch every connection still waiting, with what is known of it
        (the master is stopping: nothing may be left behind).
        """
        for waiting in list(self._waiting.values()):
            self._release(waiting, waiting.peer)

    def _hold(self, connection: Connection, peer: Any) -> None:
        waiting = _Waiting(self, connection, peer)
        self._waiting[connection[0]] = waiting
        waiting.giveUp = self._reactor.callLater(
            self._timeout, self._release, waiting, peer
        )
        waiting.reading = True
        self._reactor.addReader(waiting)

    def _look(self, waiting: _Waiting) -> None:
        waiting.retry = None
        client = peekClient(waiting.connection[0], self._family)
        if client is not INCOMPLETE:
            self._release(waiting, client or waiting.peer)
            return
        if waiting.reading:
            # Part of the header is there: the socket stays readable, so
            # look again in a moment instead of on every turn of the loop.
            waiting.reading = False
            self._reactor.removeReader(waiting)
        waiting.retry = self._reactor.callLater(RETRY_PARTIAL, self._look, waiting)

    def _release(self, waiting: _Waiting, peer: Any) -> None:
        if self._waiting.pop(waiting.connection[0], None) is None:
            return
        if waiting.reading:
            self._reactor.removeReader(waiting)
        for call in (waiting.retry, waiting.giveUp):
            if call is not None and call.active():
                call.cancel()
        self._dispatch([waiting.connection], [peer])
