"""
What both processes read from an endpoint string (C{--listen}) before
Twisted parses it: its kind, and a one-line reason when it does not parse.
"""

from __future__ import annotations

from twisted.internet.interfaces import (
    IReactorSocket,
    IReactorSSL,
    IReactorTCP,
    IReactorTime,
    IReactorUNIX,
)


class EndpointReactor(IReactorTCP, IReactorUNIX, IReactorSSL, IReactorSocket, IReactorTime):
    """
    What the server endpoints a cluster parses need of the reactor: TCP,
    UNIX and TLS ports, adopting the sockets systemd passes, and time (the
    PROXY header's time-out).
    """


def endpointKind(description: str) -> str:
    """
    The endpoint type of C{description}: C{"ssl"} for
    C{"ssl:443:privateKey=k.pem"}, C{"tcp"} for C{"8080"} (Twisted's old
    bare-port form).
    """
    head = description.split(":", 1)[0].strip().lower()
    return "tcp" if head.isdigit() else head


def explainParseError(e: Exception) -> str:
    """
    Why an endpoint string did not parse, in one line: Twisted's own words,
    except for a missing TLS library, where they ("No module named
    'OpenSSL'") do not tell the user what to install.
    """
    if isinstance(e, ImportError) and (e.name or "").split(".")[0] == "OpenSSL":
        return (
            "TLS needs pyOpenSSL, which is not installed: "
            "pip install 'twisted-cluster[tls]'"
        )
    return str(e)
