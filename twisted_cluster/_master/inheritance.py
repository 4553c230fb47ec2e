"""
Whether the descriptors a new master holds are those an upgrade's
description (L{twisted_cluster._master.handover.Handover}) says it
inherited: two pipes, then listening sockets on the described endpoints.

This, not the old master's pid, tells a real hand-over from an
environment variable that leaked into an unrelated process: the old
master may be gone, or a zombie its own parent never reaped (its pid then
still answers C{kill(pid, 0)}), while what it handed over is still here.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import Iterable

from twisted_cluster._shared.endpointstrings import endpointKind

#: The socket families each endpoint type listens with.
_FAMILIES = {
    "tcp": (socket.AF_INET, socket.AF_INET6),
    "tcp6": (socket.AF_INET6,),
    "ssl": (socket.AF_INET, socket.AF_INET6),
    "unix": (socket.AF_UNIX,),
}


def _fields(description: str) -> list[str]:
    """
    The colon-separated fields of an endpoint string, with Twisted's
    backslash escapes undone (C{unix:/a\\:b} names C{/a:b}).
    """
    fields, current, escaped = [], "", False
    for char in description:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append(current)
            current = ""
        else:
            current += char
    fields.append(current)
    return fields


def _addressMismatch(description: str, sock: socket.socket) -> str | None:
    """
    Why the listening socket C{sock} is not the one C{description} binds,
    or C{None}: its family, its port (unless the string asks for any
    port, C{0}), its file for C{unix:}.  A C{systemd:} or another plugin's
    endpoint names no address to check.
    """
    kind = endpointKind(description)
    families = _FAMILIES.get(kind)
    if families is None:
        return None
    if sock.family not in families:
        return f"{description!r} is not a {kind} socket"
    fields = _fields(description)
    positional = [f for f in fields[1:] if "=" not in f]
    named = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
    address = sock.getsockname()
    if kind == "unix":
        path = named.get("address", positional[0] if positional else "")
        if address != path:
            return f"{description!r} is bound to {address!r}"
        return None
    port = fields[0] if fields[0].isdigit() else named.get("port", positional[0] if positional else "")
    if port.isdigit() and int(port) and int(port) != address[1]:
        return f"{description!r} is bound to port {address[1]}"
    return None


def _listeningMismatch(description: str, fd: int) -> str | None:
    """
    Why C{fd} is not a listening socket of C{description}, or C{None}.
    """
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return f"descriptor {fd} of {description!r} is not a socket"
        sock = socket.socket(fileno=fd)
    except OSError as e:
        return f"descriptor {fd} of {description!r}: {e.strerror or e}"
    try:
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            return f"descriptor {fd} of {description!r} is not a listening stream socket"
        return _addressMismatch(description, sock)
    except OSError as e:
        return f"descriptor {fd} of {description!r}: {e.strerror or e}"
    finally:
        sock.detach()


def _pipeMismatch(fd: int) -> str | None:
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
    except OSError as e:
        return f"descriptor {fd}: {e.strerror or e}"
    return f"descriptor {fd} is not a pipe"


def inheritanceMismatch(
    pipes: Iterable[int], listeners: Iterable[tuple[str, int]], control: int | None
) -> str | None:
    """
    Why this process does not hold what a hand-over describes, or C{None}
    when it does: each of C{pipes} a pipe, each (endpoint string,
    descriptor) of C{listeners} a listening stream socket on that
    endpoint's address, and C{control} (when not C{None}) a listening
    socket.  Nothing is closed or changed.
    """
    for fd in pipes:
        reason = _pipeMismatch(fd)
        if reason is not None:
            return reason
    for description, fd in listeners:
        reason = _listeningMismatch(description, fd)
        if reason is not None:
            return reason
    if control is not None:
        return _listeningMismatch("the control socket", control)
    return None
