"""
C{python -m twisted_cluster.ctl}: talk to a running master's control site.

    python -m twisted_cluster.ctl status          # a table of the workers
    python -m twisted_cluster.ctl status --json   # the raw /status.json
    python -m twisted_cluster.ctl restart         # rolling restart
    python -m twisted_cluster.ctl add | remove    # one worker more / less
    python -m twisted_cluster.ctl scale 8         # as many workers as that
    python -m twisted_cluster.ctl drain 3         # worker 3 drains, one less
    python -m twisted_cluster.ctl kill 3          # SIGKILL worker 3 (replaced)
    python -m twisted_cluster.ctl restart 3       # replace worker 3 gracefully
    python -m twisted_cluster.ctl shutdown [--now]  # stop the master

Without C{--control}, it finds the master the way the master picks its
socket (L{twisted_cluster._control.site.runtimeDirectory}): the one live master
of this user, or a list to choose from when there are several.

Over TCP it sends the master's token (C{Authorization: Bearer}), read from
C{--token-file}, or from where the master writes it by default for that
port (L{twisted_cluster._control.site.defaultTokenPath}).  Over a UNIX socket
the kernel tells the master who is asking, and no token is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn, Sequence
from urllib.parse import urlsplit

import attr
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IReactorTCP, IReactorTime, IReactorUNIX
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from twisted_cluster._control.auth import readToken
from twisted_cluster._control.site import (
    CONTROL_HEADER,
    controlSockets,
    defaultTokenPath,
    runtimeDirectory,
)

#: Seconds a request to the master may take.
TIMEOUT = 15.0


class CtlError(Exception):
    """
    Something the user must fix; C{str(error)} is one line.
    """


class _Parser(argparse.ArgumentParser):
    """
    A parser whose usage errors are one line and exit status 1, like every
    other error of C{ctl} (argparse prints its usage and exits 2).
    """

    def error(self, message: str) -> NoReturn:
        raise CtlError(f"{message} (see {self.prog} --help)")


@attr.s(frozen=True, auto_attribs=True)
class Target:
    """
    Where the control site is: a base URL, reached over a UNIX socket when
    C{unixPath} is set.
    """

    base: str
    unixPath: str | None = None


def _liveSockets(directory: str) -> list[str]:
    """
    The control sockets in C{directory} whose master is alive, by pid.
    """
    return [path for _, path, alive in controlSockets(directory) if alive]


def findTarget(control: str | None, directory: str | None = None) -> Target:
    """
    Where to send requests, from a C{--control} value: a URL
    (C{http://127.0.0.1:9100/}), a master's endpoint string
    (C{unix:/path.sock:mode=600}, C{tcp:9100:interface=127.0.0.1}), a socket
    path, or C{None} to find this user's master.

    @raise CtlError: when no master, or more than one, is found.
    """
    if control is None:
        directory = directory or runtimeDirectory()
        sockets = _liveSockets(directory)
        if not sockets:
            raise CtlError(f"no running master found in {directory}: pass --control")
        if len(sockets) > 1:
            raise CtlError(
                "several masters are running, pick one with --control: "
                + " ".join(f"unix:{path}" for path in sockets)
            )
        return Target("http://localhost/", sockets[0])
    if control.startswith(("http://", "https://")):
        return Target(control if control.endswith("/") else control + "/")
    if control.startswith("/"):
        return Target("http://localhost/", control)
    kind, _, rest = control.partition(":")
    fields = rest.split(":")
    if kind == "unix" and rest:
        path = [f for f in fields if "=" not in f or f.startswith("address=")]
        if path:
            return Target("http://localhost/", path[0].removeprefix("address="))
    if kind in ("tcp", "tcp6") and fields and fields[0].isdigit():
        options = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        host = options.get("interface", "127.0.0.1")
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        host = f"[{host}]" if ":" in host else host
        return Target(f"http://{host}:{fields[0]}/")
    raise CtlError(f"cannot reach control endpoint {control!r}: use a URL, unix:PATH or tcp:PORT")


def findToken(target: Target, tokenFile: str | None = None) -> str | None:
    """
    The token to send to C{target}: from C{tokenFile} when given, else,
    over TCP, from the master's default token file for that port if it
    exists (a master run with C{--control-no-auth} writes none).  C{None}
    over a UNIX socket without C{tokenFile}.

    @raise CtlError: when the file exists or was named but cannot be read.
    """
    if tokenFile is None:
        if target.unixPath is not None:
            return None
        url = urlsplit(target.base)
        port = url.port or (443 if url.scheme == "https" else 80)
        tokenFile = defaultTokenPath(port)
        try:
            return readToken(tokenFile)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise CtlError(f"cannot read the control token in {tokenFile}: {_why(e)}") from None
    try:
        return readToken(tokenFile)
    except (OSError, ValueError) as e:
        raise CtlError(f"cannot read the control token in {tokenFile}: {_why(e)}") from None


def _why(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


class ClientReactor(IReactorTCP, IReactorUNIX, IReactorTime):
    """
    What ctl needs of the reactor: HTTP over TCP or a UNIX socket, with
    time-outs.
    """


class _UNIXEndpoints:
    """
    An endpoint factory for L{Agent}: every request goes to one socket.
    """

    def __init__(self, reactor: ClientReactor, path: str) -> None:
        self._reactor = reactor
        self._path = path

    def endpointForURI(self, uri: Any) -> UNIXClientEndpoint:
        return UNIXClientEndpoint(self._reactor, self._path, timeout=int(TIMEOUT))


class _Body(Protocol):
    """
    Collects a response body.  (L{twisted.web.client.readBody} warns on a
    UNIX transport, which cannot abort a connection.)
    """

    def __init__(self, finished: Deferred[bytes]) -> None:
        self._finished = finished
        self._data: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self._data.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._data))
        else:
            self._finished.errback(reason)


def _readBody(response: Any) -> Deferred[bytes]:
    finished: Deferred[bytes] = Deferred()
    response.deliverBody(_Body(finished))
    return finished


async def request(
    reactor: ClientReactor, target: Target, method: bytes, path: str,
    token: str | None = None,
) -> tuple[int, Any]:
    """
    Send one request to the control site; return the status code and the
    decoded JSON body.

    @param token: sent as C{Authorization: Bearer TOKEN} when given.
    """
    if target.unixPath is not None:
        agent = Agent.usingEndpointFactory(reactor, _UNIXEndpoints(reactor, target.unixPath))
    else:
        agent = Agent(reactor)
    headers = Headers({b"accept": [b"application/json"]})
    if method == b"POST":
        headers.addRawHeader(CONTROL_HEADER, b"1")
    if token is not None:
        headers.addRawHeader(b"authorization", b"Bearer " + token.encode("ascii"))
    url = (target.base + path).encode("ascii")
    d = agent.request(method, url, headers)
    d.addTimeout(TIMEOUT, reactor)
    try:
        response = await d
        body = await _readBody(response).addTimeout(TIMEOUT, reactor)
    except Exception as e:
        where = f"unix:{target.unixPath}" if target.unixPath else target.base
        raise CtlError(f"cannot reach the master at {where}: {e}") from e
    try:
        return response.code, json.loads(body)
    except ValueError:
        raise CtlError(f"the master answered {response.code} with no JSON") from None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, hours = divmod(seconds, 86400)
    hours, rest = divmod(hours, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _bytes(count: int) -> str:
    if not count:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return "-"  # pragma: no cover


def formatStatus(status: dict[str, Any]) -> str:
    """
    A C{/status.json} document as a summary line and a table, one row per
    worker process.
    """
    cluster, master = status["cluster"], status["master"]
    restarts = ", ".join(f"{k} {v}" for k, v in cluster["restarts"].items() if v) or "none"
    lines = [
        f"master pid {master['pid']}, listening on {', '.join(master['listening'])}",
        f"workers: {cluster['states'].get('ready', 0)} ready of {cluster['target']} wanted"
        f" ({', '.join(f'{n} {s}' for s, n in cluster['states'].items() if n) or 'none running'})",
        f"connections: {cluster['accepted']} accepted, {cluster['rate']:.1f}/s now, "
        f"{cluster['redispatched']} redispatched, {cluster['dropped']} dropped",
        f"restarts: {restarts}",
        "",
    ]
    header = ("ID", "PID", "STATE", "UPTIME", "RESTARTS", "OPEN", "SERVED",
              "DISPATCHED", "RSS", "PING")
    rows = [header]
    for w in status["workers"]:
        ping = "-" if w["ping"] is None else f"{w['ping'] * 1000:.1f}ms"
        rows.append((
            str(w["id"]), str(w["pid"]), w["state"], _duration(w["uptime"]),
            str(w["restarts"]), str(w["open"]), str(w["served"]),
            str(w["dispatched"]), _bytes(w["rss"]), ping,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [
            cell.ljust(width) if i == 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _wholeNumber(text: str) -> int:
    """
    A worker id or count as given on the command line: digits only (C{int}
    would also read C{"+1"}, C{" 1"} and C{"1_0"}, which is ten).
    """
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def parser() -> argparse.ArgumentParser:
    """
    The command line of C{python -m twisted_cluster.ctl}.
    """
    top = _Parser(
        prog="python -m twisted_cluster.ctl",
        description="Show and control a running twist cluster master.",
    )
    top.add_argument(
        "--control",
        help="the master's control endpoint: unix:PATH, tcp:PORT[:interface=HOST] "
        "or a URL (default: the one master of this user, found in "
        f"{runtimeDirectory()})",
    )
    top.add_argument(
        "--token-file",
        help="the file holding the master's control token, for a TCP control site "
        "(default: tcp-PORT.token in the directory above, where the master writes it)",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = commands.add_parser("status", help="show the workers as a table")
    status.add_argument("--json", action="store_true", help="print /status.json as is")
    restart = commands.add_parser(
        "restart", help="rolling restart of every worker, or replace worker ID"
    )
    restart.add_argument("worker", type=_wholeNumber, nargs="?", metavar="ID")
    commands.add_parser("add", help="run one worker more")
    commands.add_parser("remove", help="run one worker less (the highest id drains)")
    scale = commands.add_parser("scale", help="run N workers")
    scale.add_argument("workers", type=_wholeNumber, metavar="N")
    drain = commands.add_parser(
        "drain", help="worker ID finishes its requests and exits; one worker less"
    )
    drain.add_argument("worker", type=_wholeNumber, metavar="ID")
    kill = commands.add_parser("kill", help="SIGKILL worker ID now; its slot restarts")
    kill.add_argument("worker", type=_wholeNumber, metavar="ID")
    shutdown = commands.add_parser(
        "shutdown", help="stop the master gracefully (--now: kill the workers first)"
    )
    shutdown.add_argument("--now", action="store_true",
                          help="SIGKILL the workers instead of letting them drain")
    return top


def requestFor(args: argparse.Namespace) -> tuple[bytes, str]:
    """
    The method and path of the control site's endpoint for a parsed
    command (see L{twisted_cluster._control.operations}).
    """
    command = args.command
    if command == "status":
        return b"GET", "status.json"
    if command == "scale":
        return b"POST", f"scale?workers={args.workers}"
    if command == "shutdown":
        return b"POST", "shutdown?now=1" if args.now else "shutdown"
    if getattr(args, "worker", None) is not None:
        return b"POST", f"{command}?worker={args.worker}"
    return b"POST", command


async def run(reactor: ClientReactor, argv: Sequence[str], out: Any = sys.stdout) -> int:
    """
    Run one command; return the exit status.
    """
    try:
        args = parser().parse_args(argv)
        target = findTarget(args.control)
        token = findToken(target, args.token_file)
        method, path = requestFor(args)
        code, document = await request(reactor, target, method, path, token)
    except CtlError as e:
        sys.stderr.write(f"ctl: error: {e}\n")
        return 1
    if code == 401:
        hint = "" if target.unixPath else " (pass --token-file: the master's --control-token)"
        sys.stderr.write(f"ctl: error: {args.command}: refused by the master: "
                         f"{document.get('error', code)}{hint}\n")
        return 1
    if code >= 400:
        # A refusal names its operation and reason itself.
        prefix = "" if "reason" in document else f"{args.command}: "
        sys.stderr.write(f"ctl: error: {prefix}{document.get('error', code)}\n")
        return 1
    if args.command == "status":
        out.write(json.dumps(document, indent=1) + "\n" if args.json else formatStatus(document))
    else:
        out.write(f"{args.command}: accepted\n")
        out.write(formatStatus(document["status"]))
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """
    The console entry point: exits with the command's status.
    """
    from twisted.internet.task import react

    arguments = list(sys.argv[1:] if argv is None else argv)

    async def go(reactor: ClientReactor) -> None:
        code = await run(reactor, arguments)
        if code:
            raise SystemExit(code)

    react(lambda reactor: Deferred.fromCoroutine(go(reactor)))


if __name__ == "__main__":
    main()
