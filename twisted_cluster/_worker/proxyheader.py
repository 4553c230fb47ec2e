"""
The strict PROXY protocol reader of a worker's C{haproxy:} listener.

Twisted's reader accepts v1 headers with impossible addresses and ports
and logs a traceback for a header that is not ASCII; this one refuses those
before the app sees a byte, closes the connection, counts it, and logs at
most one line per listener every L{REFUSAL_LOG_INTERVAL} seconds.  A module
of its own so that only workers with such a listener load Twisted's PROXY
protocol modules (L{twisted_cluster._worker.wrapping} imports it when needed).
"""

from __future__ import annotations

import ipaddress
import re

from twisted.internet.interfaces import IAddress, IProtocolFactory, IReactorTime
from twisted.logger import Logger

# Twisted's PROXY protocol reader is public only as an endpoint wrapper;
# the strict reader below is built on its parts.
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.haproxy._wrapper import (
    HAProxyProtocolWrapper,
    HAProxyWrappingFactory,
)

from twisted_cluster import logevents
from twisted_cluster._shared.ratelimit import RateLimiter

log = Logger()


#: Seconds between two log events about refused PROXY headers of one
#: listener: a client that sends bad headers in a loop costs one line per
#: interval, which counts the others.
REFUSAL_LOG_INTERVAL = 10.0

_PORT = re.compile(rb"[0-9]{1,5}")


def v1HeaderProblem(line: bytes) -> str | None:
    """
    What is wrong with a PROXY protocol version 1 header line (without its
    CRLF), or C{None} when nothing is.

    Twisted's parser takes any text for an address and any integer for a
    port: C{999.1.1.1}, port C{99999}, a NUL byte reach the app as its
    client's address.  The specification allows only this::

        PROXY TCP4 <IPv4> <IPv4> <port> <port>
        PROXY TCP6 <IPv6> <IPv6> <port> <port>
        PROXY UNKNOWN [anything printable]
    """
    if not line.isascii() or any(byte < 0x20 or byte == 0x7F for byte in line):
        return "the header holds bytes other than printable ASCII"
    fields = line.split(b" ")
    if fields[:2] == [b"PROXY", b"UNKNOWN"]:
        return None
    if len(fields) != 6 or fields[0] != b"PROXY" or fields[1] not in (b"TCP4", b"TCP6"):
        return "the header is not PROXY TCP4|TCP6 <source> <destination> <port> <port>"
    kind = ipaddress.IPv4Address if fields[1] == b"TCP4" else ipaddress.IPv6Address
    for address in fields[2:4]:
        try:
            kind(address.decode("ascii"))
        except ValueError:
            return f"{address.decode('ascii')!r} is no {fields[1].decode()} address"
    for port in fields[4:6]:
        if not _PORT.fullmatch(port) or int(port) > 65535:
            return f"{port.decode('ascii')!r} is no port"
    return None


class _StrictProxyProtocol(HAProxyProtocolWrapper):
    """
    Twisted's PROXY protocol reader, which also refuses a header whose
    addresses or ports are not valid, or whose bytes its parser cannot
    read, before anything of the connection reaches the app.
    """

    factory: "StrictProxyFactory"

    def dataReceived(self, data: bytes) -> None:
        if self._proxyInfo is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        parser = self._parser
        if parser is None:
            if (
                len(data) >= 16
                and data[:12] == V2Parser.PREFIX
                and data[12] & 0xF0 == 0x20
            ):
                self._parser = parser = V2Parser()
            elif len(data) >= 8 and data[:5] == V1Parser.PROXYSTR:
                self._parser = parser = V1Parser()
            else:
                self._refuse("the connection does not begin with a PROXY header")
                return
        try:
            info, remaining = parser.feed(data)
        except InvalidProxyHeader:
            self._refuse("the PROXY header is malformed")
            return
        except ValueError:
            # Twisted's v1 parser decodes the addresses as ASCII and the
            # ports with int(), and lets their errors out.
            self._refuse("the PROXY header does not parse")
            return
        if info is None:
            return
        problem = v1HeaderProblem(info.header) if isinstance(parser, V1Parser) else None
        if problem is not None:
            self._refuse(problem)
            return
        self._proxyInfo = info
        if remaining:
            self.wrappedProtocol.dataReceived(remaining)

    def _refuse(self, reason: str) -> None:
        assert self.transport is not None
        self.factory.refused(self.transport.getPeer(), reason)
        self.loseConnection()


class StrictProxyFactory(HAProxyWrappingFactory):
    """
    The factory of a C{haproxy:} listener in a worker: reads the PROXY
    header of each connection (L{_StrictProxyProtocol}), closes the
    connections whose header it refuses, counts them, and logs them at
    most once per L{REFUSAL_LOG_INTERVAL}.

    @ivar refusedCount: how many connections it closed for their header.
    """

    protocol: type[HAProxyProtocolWrapper] = _StrictProxyProtocol

    def __init__(self, wrappedFactory: IProtocolFactory, clock: IReactorTime) -> None:
        super().__init__(wrappedFactory)
        self.refusedCount = 0
        self._refusals = RateLimiter(clock, REFUSAL_LOG_INTERVAL)

    def refused(self, peer: IAddress, reason: str) -> None:
        """
        A connection from C{peer} was closed for its header; log it unless
        one was logged less than L{REFUSAL_LOG_INTERVAL} ago.
        """
        self.refusedCount += 1
        unlogged = self._refusals.allow()
        if unlogged is None:
            return
        log.warn(
            "closed a connection from {peer} for its PROXY header: {reason} "
            "({refused} refused, {unlogged} not logged since the last line)",
            cluster_event=logevents.PROXY_HEADER_REFUSED,
            peer=str(peer),
            reason=reason,
            refused=self.refusedCount,
            unlogged=unlogged,
        )
