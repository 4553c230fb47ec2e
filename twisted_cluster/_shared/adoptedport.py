"""
Serve on a listening socket this process adopted rather than created.

Two processes adopt listening sockets: a worker under C{--dispatch shared}
(it accepts on a copy of each of the master's sockets) and the master for
a C{systemd:} endpoint (systemd bound the socket).  Only whoever created a
socket decides what becomes of it, and of its file for a UNIX socket.

Twisted's C{IReactorSocket.adoptStreamPort} treats an adopted UNIX socket
as if the port had bound it: it sets the file's mode to the port's default
(0666, whatever C{mode=} the creator asked for; under C{--user} a worker
may not even change it), calls C{listen} again with its default backlog of
50 (the kernel then queues 50 connections, whatever C{--backlog} says),
and when the port stops it shuts the socket down (which makes the kernel
refuse connections for every process holding it) and removes the file.
A worker leaving would thus take the socket away from the whole cluster.

L{adoptListeningPort} serves an adopted UNIX socket as it is, and leaves
both the socket and its file alone when it stops: only the descriptor of
this process is closed.  TCP sockets already get that from Twisted.

A third case hands the file over with the socket: a master started by
SIGUSR2 inherits the old master's C{unix:PATH} sockets, which the old one
bound, and owns them from then on (the old one leaves them alone when it
exits).  With C{ownsFile}, the port removes the file when it stops, as the
port that bound it would have.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any

from twisted.internet import tcp, unix
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorSocket
from twisted.python.failure import Failure


class _AdoptedUNIXPort(unix.Port):
    """
    A UNIX listening port on a socket some other process created: it
    accepts like Twisted's own, and neither binds, listens, changes the
    file's mode, shuts the socket down, nor removes its file.
    """

    # shutdown() on a listening socket acts on the socket, not on this
    # process's descriptor: every process sharing it would be refused.
    _shouldShutdown = False

    def startListening(self) -> None:
        """
        Start accepting on the adopted socket: what C{unix.Port} does for
        one, without its C{bind}, C{chmod} and C{listen}.
        """
        # The descriptor Twisted keeps in reserve to accept and close
        # connections once the process has run out of descriptors.
        tcp._reservedFD.reserve()
        skt, self._preexistingSocket = self._preexistingSocket, None
        assert skt is not None and self.factory is not None, "built by adoptListeningPort"
        self.factory.doStart()
        self.connected = True
        self.socket = skt
        self.fileno = skt.fileno  # type: ignore[method-assign]
        self.numberAccepts = 100
        self.startReading()

    def connectionLost(self, reason: Failure) -> None:
        """
        Close this process's descriptor; the file stays for its creator.
        """
        tcp.Port.connectionLost(self, reason)


class _InheritedUNIXPort(_AdoptedUNIXPort):
    """
    An adopted UNIX listening port whose file this process now owns: it
    removes the file when it stops (still without shutting the socket
    down, so that a process it hands the socket to keeps it).
    """

    _path: str | None = None

    def startListening(self) -> None:
        """
        Accept on the adopted socket; remember its file to remove it later.
        """
        super().startListening()
        name = self.socket.getsockname()
        path = name.decode() if isinstance(name, bytes) else name
        # An abstract-namespace name (leading NUL) has no file.
        self._path = path if path and not path.startswith("\0") else None

    def connectionLost(self, reason: Failure) -> None:
        """
        Close the descriptor and remove the socket's file.
        """
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
        super().connectionLost(reason)


def adoptListeningPort(
    reactor: IReactorSocket,
    fd: int,
    family: int,
    factory: IProtocolFactory,
    ownsFile: bool = False,
) -> IListeningPort:
    """
    Accept connections on the listening socket C{fd}, created by another
    process, with protocols from C{factory}.

    Like C{reactor.adoptStreamPort}, the port works on a duplicate of C{fd}
    (the caller closes C{fd}), which must be non-blocking; unlike it, a UNIX
    socket is served as it is and left to its creator when the port stops
    (see the module docstring).

    @param family: the socket's address family.
    @param ownsFile: for a UNIX socket, whether this process owns its file
        (inherited at a master upgrade) and removes it when the port stops.
    """
    if family != socket.AF_UNIX:
        # Twisted annotates the factory as a ServerFactory; any
        # IProtocolFactory serves.
        return reactor.adoptStreamPort(
            fd, socket.AddressFamily(family), factory  # type: ignore[arg-type]
        )
    kind = _InheritedUNIXPort if ownsFile else _AdoptedUNIXPort
    port: Any = kind._fromListeningDescriptor(reactor, fd, factory)
    port.startListening()
    return port
