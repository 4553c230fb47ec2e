"""
Open the master's listening sockets from Twisted endpoint strings.

Users write the endpoint strings they know (C{tcp:8080},
C{tcp6:8080:interface=\\:\\:1}, C{unix:/run/app.sock}, C{systemd:...}).  The
master lets Twisted's own endpoint parse and bind them, then takes the
listening socket away from Twisted's port object so that the L{Acceptor}
accepts on it without building a Protocol per connection.

Whoever creates a socket file removes it, and nobody else: the master
removes the file of a C{unix:PATH} listener it bound when it stops, never
the file of a socket systemd passed it (C{systemd:domain=UNIX}), whose
mode and backlog stay systemd's too (L{twisted_cluster._shared.adoptedport}).

A master upgrade (SIGUSR2) hands the sockets over: the new master adopts
each one from the descriptor it inherited (L{adoptListener}) and owns it
from then on, file included, while the old master only closes its own
descriptor (L{Listener.release}): no moment without a listening socket.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any

import attr
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.fdesc import setNonBlocking
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol

from twisted_cluster._shared.adoptedport import adoptListeningPort
from twisted_cluster._shared.endpointstrings import (
    EndpointReactor,
    endpointKind,
    explainParseError,
)

#: Connections the kernel queues on a listening socket before the master
#: accepts them (C{--backlog}); Linux caps it at C{net.core.somaxconn}.
#: Twisted's own default, 50, overflows under a burst of a few hundred
#: clients: the kernel then drops their SYNs and they retry a second later.
DEFAULT_BACKLOG = 2048


class ListenError(Exception):
    """
    An endpoint could not be parsed or bound.  C{str(error)} is one line.
    """


@attr.s(auto_attribs=True)
class Listener:
    """
    One bound, listening socket of the master.

    @ivar description: the endpoint string the user gave.
    @ivar port: Twisted's port object, kept to close the socket cleanly.
    @ivar socket: the listening socket itself, non-blocking.
    """

    description: str
    port: IListeningPort
    socket: socket.socket

    @property
    def family(self) -> int:
        """
        The socket's address family (C{AF_INET}, C{AF_INET6}, C{AF_UNIX}).
        """
        return int(self.socket.family)

    def address(self) -> str:
        """
        The bound address, readable (the real port when the user asked
        for port 0).
        """
        name = self.socket.getsockname()
        if self.family == socket.AF_UNIX:
            return f"unix:{name if isinstance(name, str) else name.decode()}"
        host, port = name[:2]
        return f"{host}:{port}" if self.family == socket.AF_INET else f"[{host}]:{port}"

    @property
    def portNumber(self) -> int | None:
        """
        The bound TCP port, or C{None} for a UNIX socket.
        """
        if self.family == socket.AF_UNIX:
            return None
        return int(self.socket.getsockname()[1])

    def close(self) -> None:
        """
        Stop listening.  The file of a UNIX socket the master bound is
        removed; a socket systemd passed is left as it is, file and all.
        """
        self.port.stopListening()

    def release(self) -> None:
        """
        Close this process's descriptor only, for a master that handed the
        socket to its successor: no C{shutdown} (which would refuse
        connections for the new master too) and the file of a UNIX socket
        stays (the new master owns it now).
        """
        self.socket.close()


def parseEndpoint(reactor: EndpointReactor, description: str) -> IStreamServerEndpoint:
    """
    Parse an endpoint string, so that mistakes surface before anything
    starts.

    @raise ListenError: with the parser's complaint, in one line.
    """
    try:
        return serverFromString(reactor, description)
    except (IndexError, KeyError) as e:
        if "systemd:" in description:
            raise ListenError(
                f"bad --listen endpoint {description!r}: no such socket passed "
                "by systemd (LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES name "
                "the inherited sockets)"
            ) from e
        raise ListenError(f"bad --listen endpoint {description!r}: {e}") from e
    except Exception as e:
        # ValueError, TypeError, OSError, ImportError (no TLS library), and
        # the TLS library's own errors for a certificate or key that does
        # not load.
        raise ListenError(
            f"bad --listen endpoint {description!r}: {explainParseError(e)}"
        ) from e


def listenNow(endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> IListeningPort:
    """
    Listen on C{endpoint} and return its port at once, so that a bad
    address fails the caller now rather than in a Deferred nobody waits on.
    The endpoints that bind a socket (tcp, unix, ssl, systemd) bind
    synchronously.

    @raise ListenError: with the reason only (C{"Address already in use"},
        C{"endpoint is not immediate"}), for the caller to put in context.
    """
    if isinstance(endpoint, AdoptedStreamServerEndpoint):
        return _listenInherited(endpoint, factory)
    result: list[Any] = []
    endpoint.listen(factory).addBoth(result.append)
    if not result:
        raise ListenError("endpoint is not immediate")
    outcome = result[0]
    if not IListeningPort.providedBy(outcome):
        error = outcome.value
        reason = getattr(error, "socketError", None) or error
        raise ListenError(getattr(reason, "strerror", None) or str(reason))
    return outcome


def _listenInherited(
    endpoint: AdoptedStreamServerEndpoint, factory: IProtocolFactory
) -> IListeningPort:
    """
    Listen on a socket systemd passed, as C{endpoint.listen} would, except
    that a UNIX socket keeps its file, mode and backlog, and its file is
    not removed when the master stops: systemd created it.

    @raise ListenError: with the reason only (C{"Bad file descriptor"}).
    """
    try:
        setNonBlocking(endpoint.fileno)
        port = adoptListeningPort(
            endpoint.reactor, endpoint.fileno, endpoint.addressFamily, factory
        )
    except OSError as e:
        raise ListenError(e.strerror or str(e)) from None
    # The port holds its own duplicate, as with the endpoint's own listen.
    os.close(endpoint.fileno)
    return port


def ownsBacklog(description: str) -> bool:
    """
    Whether C{--backlog} applies to C{description}: not when the endpoint
    string sets its own (C{tcp:80:backlog=100}), nor to a socket systemd
    passed in (its unit's C{Backlog=} decides).
    """
    return endpointKind(description) != "systemd" and ":backlog=" not in description


def listen(
    reactor: EndpointReactor, description: str, backlog: int = DEFAULT_BACKLOG
) -> Listener:
    """
    Bind and listen on C{description}; return the listening socket with
    Twisted no longer accepting on it.

    @param backlog: the listen queue's length, unless the endpoint decides
        it (L{ownsBacklog}).
    @raise ListenError: when the endpoint is malformed or cannot be bound
        (address in use, permission denied).
    """
    endpoint = parseEndpoint(reactor, description)
    placeholder = Factory.forProtocol(Protocol)
    placeholder.noisy = False
    try:
        # A socket port (tcp.Port, unix.Port) is also a FileDescriptor.
        port: Any = listenNow(endpoint, placeholder)
    except ListenError as e:
        raise ListenError(f"cannot listen on {description!r}: {e}") from None
    sock = getattr(port, "socket", None)
    if sock is None:
        port.stopListening()
        raise ListenError(f"cannot listen on {description!r}: not a stream socket")
    port.stopReading()
    sock.setblocking(False)
    if ownsBacklog(description):
        sock.listen(backlog)
    return Listener(description, port, sock)


def adoptListener(
    reactor: EndpointReactor, description: str, fd: int, factory: IProtocolFactory | None = None
) -> Listener:
    """
    The listener C{description} on the listening socket C{fd} that this
    master inherited from the one it replaces (SIGUSR2), instead of binding
    it: the same socket, whose queue kept every connection meanwhile.  The
    file of a C{unix:} socket becomes this master's to remove; a C{systemd:}
    socket's stays systemd's.  C{fd} is closed (the port holds a copy).

    @param factory: serve the socket with it, as a Twisted port (the
        control site); by default the port only holds the socket, for the
        L{Acceptor} to accept on.
    @raise ListenError: when C{fd} is not a listening socket.
    """
    try:
        probe = socket.socket(fileno=fd)
        family = int(probe.family)
        probe.detach()
        setNonBlocking(fd)
        serving = factory
        if serving is None:
            serving = Factory.forProtocol(Protocol)
            serving.noisy = False
        port: Any = adoptListeningPort(
            reactor, fd, family, serving,
            ownsFile=endpointKind(description) == "unix",
        )
    except OSError as e:
        raise ListenError(
            f"cannot adopt the inherited socket of {description!r}: {e.strerror or e}"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    sock = port.socket
    if factory is None:
        port.stopReading()
        sock.setblocking(False)
    return Listener(description, port, sock)
