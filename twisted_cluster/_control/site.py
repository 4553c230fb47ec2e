"""
The control site: a small twisted.web site served by the master, for
people (a live status page) and for programs (C{/status.json}, Prometheus
C{/metrics}, and POST operations: rolling restart, add, remove, drain, kill
or restart one worker, scale, shut down; see
L{twisted_cluster._control.operations}).

By default it listens on a UNIX socket of mode 0600 in a directory of mode
0700 that only the master's user can enter (see L{defaultEndpoint}): other
users of the machine can neither read the figures nor restart the cluster.
Everything but the probes and the page's files also checks who asks
(L{twisted_cluster._control.auth}): the peer's uid on a UNIX socket, a token
from a file only the master's user can read over TCP.  Operations also
require C{POST} and the L{CONTROL_HEADER} header, so that a web page in a
browser cannot trigger them on a TCP control endpoint (a cross-site form
cannot set that header, and a cross-site script needs a CORS pre-flight
that this site never grants).  Each operation is logged with who asked.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any, Callable

import attr
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.static import File
from zope.interface import implementer

from twisted_cluster import logevents
from twisted_cluster._control.auth import (
    Access,
    AccessPolicy,
    Peer,
    TokenFile,
    TokenFileError,
    Verdict,
    loadToken,
    newToken,
)
from twisted_cluster._control.budget import BudgetedFactory
from twisted_cluster._control.gathering import MetricsGatherer
from twisted_cluster._control.metrics import RateHistory, clusterRegistry, clusterStatus
from twisted_cluster._control.operations import BadArguments, operations
from twisted_cluster._control.probes import addProbes
from twisted_cluster._control.responses import jsonResponse
from twisted_cluster._master.listening import ListenError, adoptListener, listenNow
from twisted_cluster._master.pidfile import pidAlive
from twisted_cluster._master.service import IControlPlane
from twisted_cluster._shared.endpointstrings import EndpointReactor
from twisted_cluster._supervision.refusal import OperationRefused
from twisted_cluster.apploading import quietSite

log = Logger()

#: The C{--control} value that picks L{defaultEndpoint}.
AUTO = "auto"

#: The C{--control} value that turns the control site off.
NONE = "none"

#: Header that every operation (POST) must carry; its value is not checked.
CONTROL_HEADER = b"X-Cluster-Control"

#: The status page's files.
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


class ControlError(ListenError):
    """
    The control endpoint could not be parsed or bound.
    """


def runtimeDirectory(uid: int | None = None) -> str:
    """
    Where control sockets live: C{$XDG_RUNTIME_DIR/twisted-cluster} when the
    session has a runtime directory (systemd gives each user one, mode
    0700), else C{/tmp/twisted-cluster-UID}.  L{twisted_cluster.ctl} looks
    there too.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "twisted-cluster")
    return f"/tmp/twisted-cluster-{os.getuid() if uid is None else uid}"


def _privateDirectory(path: str) -> None:
    """
    Create C{path} with mode 0700, or check that an existing one belongs to
    us and is not open to others (C{/tmp} is shared: someone else could have
    made it first).
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    status = os.lstat(path)
    if status.st_uid != os.getuid() or status.st_mode & 0o077 or not os.path.isdir(path):
        raise ControlError(
            f"control directory {path} is not a private directory of ours "
            "(owner and mode 0700): pass --control explicitly"
        )


def controlSockets(directory: str) -> list[tuple[int, str, bool]]:
    """
    The default control sockets in C{directory}: (master pid, path, whether
    that master is alive), by pid.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        stem, _, ext = name.partition(".")
        if ext == "sock" and stem.isdigit():
            pid = int(stem)
            found.append((pid, os.path.join(directory, name), pidAlive(pid)))
    return sorted(found)


def _removeStale(directory: str) -> None:
    """
    Remove the sockets (and lock files) and the token files (and their
    locks) that killed masters left behind.
    """
    for _, path, alive in controlSockets(directory):
        if not alive:
            for leftover in (path, path + ".lock"):
                try:
                    os.unlink(leftover)
                except FileNotFoundError:
                    pass
    for name in os.listdir(directory):
        if re.fullmatch(r"tcp-\d+\.token", name):
            TokenFile(os.path.join(directory, name)).removeStale()


def defaultTokenPath(port: int, uid: int | None = None) -> str:
    """
    Where a master whose control site listens on TCP port C{port} writes
    its token when C{--control-token} names no file:
    C{tcp-PORT.token} in L{runtimeDirectory}.  L{twisted_cluster.ctl}
    finds it there from the port alone.
    """
    return os.path.join(runtimeDirectory(uid), f"tcp-{port}.token")


def defaultEndpoint(pid: int) -> str:
    """
    The default control endpoint of master C{pid}: a UNIX socket, mode
    0600, named after the pid in L{runtimeDirectory}, with a lock file so
    that a socket left by a killed master is replaced.
    """
    directory = runtimeDirectory()
    _privateDirectory(directory)
    _removeStale(directory)
    return f"unix:{directory}/{pid}.sock:mode=600:lockfile=1"


def resolveEndpoint(description: str | None, pid: int) -> str | None:
    """
    The endpoint string to listen on for the C{--control} value
    C{description}: C{None} or L{NONE} is off, L{AUTO} is
    L{defaultEndpoint}, anything else is a Twisted server endpoint string.
    """
    if description is None or description == NONE:
        return None
    if description == AUTO:
        return defaultEndpoint(pid)
    return privateUNIX(description)


def privateUNIX(description: str) -> str:
    """
    C{description}, with C{mode=600} added when it is a UNIX endpoint that
    sets no mode: Twisted creates UNIX sockets with mode 0666, and whoever
    can connect to the control site can restart the cluster.
    """
    kind, _, rest = description.partition(":")
    parameters = re.split(r"(?<!\\):", rest)
    if kind.strip().lower() != "unix" or any(p.startswith("mode=") for p in parameters):
        return description
    return f"{description}:mode=600"


def checkEndpoint(reactor: EndpointReactor, description: str | None) -> None:
    """
    Parse a C{--control} value now, so that a typo fails before anything
    starts.

    @raise ControlError: when it is not an endpoint string.
    """
    if description is None or description in (NONE, AUTO):
        return
    _parseEndpoint(reactor, description)


def _parseEndpoint(reactor: EndpointReactor, description: str) -> IStreamServerEndpoint:
    """
    The server endpoint of a C{--control} endpoint string.

    @raise ControlError: when it is not an endpoint string.
    """
    try:
        return serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise ControlError(f"bad --control endpoint {description!r}: {e}") from e


def _portAddress(port: IListeningPort, description: str) -> str:
    """
    Where a bound control port can be reached: C{unix:PATH} or
    C{http://HOST:PORT/}.
    """
    # An IPv4Address, IPv6Address or UNIXAddress.
    host: Any = port.getHost()
    name = getattr(host, "name", None)
    if name is not None:
        return f"unix:{name.decode() if isinstance(name, bytes) else name}"
    scheme = "https" if description.startswith("ssl:") else "http"
    address = f"[{host.host}]" if ":" in host.host else host.host
    return f"{scheme}://{address}:{host.port}/"


class _Protected(Resource):
    """
    A resource only those L{Access} admits may use; others get C{401}
    and nothing runs.
    """

    isLeaf = True

    def __init__(self, access: Access) -> None:
        super().__init__()
        self._access = access

    def render(self, request: Request) -> bytes:
        peer, verdict = self._access.admit(request)
        if not verdict.allowed:
            request.setHeader(b"www-authenticate", b'Bearer realm="twisted-cluster"')
            error = (
                "the control site needs Authorization: Bearer TOKEN, with the token "
                "from the master's token file (see docs/observability.md)"
                if not peer.unix else "this user may not use the control site"
            )
            return jsonResponse(request, {"error": error}, 401)
        return self.renderAdmitted(request, peer, verdict)

    def renderAdmitted(self, request: Request, peer: Peer, verdict: Verdict) -> bytes:
        """
        Answer an admitted request (by default: C{render_METHOD}).
        """
        answer: bytes = super().render(request)
        return answer


class _Status(_Protected):
    def __init__(
        self, access: Access, status: Callable[[], dict[str, Any]], gatherer: MetricsGatherer
    ) -> None:
        super().__init__(access)
        self._status = status
        self._gatherer = gatherer

    def render_GET(self, request: Request) -> bytes:
        # The app's figures on the page come from the last gathering.
        self._gatherer.refresh()
        return jsonResponse(request, self._status())


#: Seconds a rendered C{/metrics} answer is served again before the next
#: render.  Prometheus scrapes every 15 s or so; a client scraping
#: thousands of times a second then costs the master a cached write, not
#: a walk over every worker's figures.
METRICS_CACHE_SECONDS = 1.0

#: A render that took C{t} seconds is served again for C{t} times this
#: (if that is longer than L{METRICS_CACHE_SECONDS}): a scraper can take
#: the master's reactor from handing off connections for at most a tenth
#: of its time, however heavy the workers' series.
SLOW_RENDER_FACTOR = 10.0


class _Metrics(_Protected):
    """
    The Prometheus exposition, rendered in the reactor thread (the
    collector reads live state that only the reactor thread may touch;
    prometheus_client's own Twisted resource would read it from a thread
    pool), at most once per L{METRICS_CACHE_SECONDS} (a slow render is
    served for longer: L{SLOW_RENDER_FACTOR}), after the app's
    metrics were gathered from the workers (L{MetricsGatherer}: bounded
    in time, so a hung worker never holds a scrape up).
    """

    def __init__(
        self,
        access: Access,
        status: Callable[[], dict[str, Any]],
        clock: IReactorTime,
        gatherer: MetricsGatherer,
        cacheSeconds: float = METRICS_CACHE_SECONDS,
    ) -> None:
        super().__init__(access)
        self._gatherer = gatherer
        self._registry = clusterRegistry(status, gatherer)
        self._clock = clock
        self._cacheSeconds = cacheSeconds
        self._cached: tuple[float, bytes] | None = None
        self._lifetime = cacheSeconds

    def render_GET(self, request: Request) -> bytes | int:
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        now = self._clock.seconds()
        if self._cached is not None and now - self._cached[0] < self._lifetime:
            return self._cached[1]
        rendered: list[bytes] = []
        gathered = self._gatherer.gather()
        gathered.addCallback(lambda _: rendered.append(self._render()))
        if rendered:
            return rendered[0]
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)

        def answer(_: Any) -> None:
            if not gone:
                request.write(rendered[0])
                request.finish()

        gathered.addCallback(answer)
        return NOT_DONE_YET

    def _render(self) -> bytes:
        """
        The exposition, rendered now unless a scrape that shared the same
        gathering just rendered it.
        """
        from prometheus_client.exposition import generate_latest

        now = self._clock.seconds()
        if self._cached is None or now - self._cached[0] >= self._lifetime:
            body = generate_latest(self._registry)
            took = self._clock.seconds() - now
            self._lifetime = max(self._cacheSeconds, took * SLOW_RENDER_FACTOR)
            self._cached = (now, body)
        return self._cached[1]


def _literalHost(host: bytes | None) -> bool:
    """
    Whether an HTTP C{Host} header names this machine without DNS: an IP
    address or C{localhost}, with or without a port.
    """
    if not host:
        return False
    name = host.decode("latin-1")
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _arguments(request: Request) -> dict[str, str]:
    """
    The first few arguments of an operation, cut short, for its log line
    (the peer is admitted, but a log line stays small).
    """
    args: dict[bytes, list[bytes]] = request.args or {}
    return {
        key.decode("ascii", "replace")[:32]: values[0].decode("ascii", "replace")[:64]
        for key, values in list(args.items())[:4] if values
    }


class _Operation(_Protected):
    """
    One operation (L{twisted_cluster._control.operations}): C{POST} with
    the L{CONTROL_HEADER} header, to an IP address or C{localhost} (not a
    DNS name), from a peer L{Access} admits, runs it, logs who asked, and
    answers C{202} with the new status, or an error (L{_failed}).
    """

    def __init__(
        self,
        access: Access,
        name: str,
        run: Callable[[Request], Any],
        status: Callable[[], dict[str, Any]],
    ) -> None:
        super().__init__(access)
        self._name = name
        self._run = run
        self._status = status

    def renderAdmitted(self, request: Request, peer: Peer, verdict: Verdict) -> bytes:
        if request.method != b"POST":
            request.setHeader(b"allow", b"POST")
            return jsonResponse(request, {"error": f"{self._name} needs POST"}, 405)
        if request.getHeader(CONTROL_HEADER) is None:
            return jsonResponse(
                request,
                {"error": f"operations need the {CONTROL_HEADER.decode()} header"},
                403,
            )
        if not _literalHost(request.getHeader(b"host")):
            # A page served under a DNS name that was re-bound to this
            # address would be same-origin, and could send the header.
            return jsonResponse(
                request,
                {"error": "operations need an IP address or localhost as Host"},
                403,
            )
        log.info(
            "control: {operation} {arguments} requested by {peer} (uid {peer_uid}, "
            "pid {peer_pid}; authenticated: {authenticated}, by {how})",
            cluster_event=logevents.CONTROL_OPERATION,
            operation=self._name,
            arguments=_arguments(request),
            authenticated=verdict.authenticated,
            how=verdict.reason,
            **peer.fields(),
        )
        result = maybeDeferred(self._run, request)
        outcome: list[Any] = []

        def record(value: Any) -> Any:
            outcome.append(value)
            return value

        result.addBoth(record)
        if outcome:
            result.addErrback(lambda failure: None)  # answered below
        else:
            # A long operation (a roll-out): answered now, logged if it fails.
            result.addErrback(
                lambda f: log.failure(
                    "control: {operation} failed", f,
                    cluster_event=logevents.CONTROL_OPERATION_FAILED,
                    operation=self._name,
                )
            )
        if outcome and isinstance(outcome[0], Failure):
            return self._failed(request, outcome[0])
        if outcome and outcome[0] is False:
            error = f"{self._name} refused: the cluster is stopping"
            return jsonResponse(request, {"operation": self._name, "error": error}, 409)
        return jsonResponse(request, {"operation": self._name, "status": self._status()}, 202)

    def _failed(self, request: Request, failure: Failure) -> bytes:
        """
        The answer to an operation that failed at once: C{409} with the
        reason when the cluster refused it, C{400} when the request did not
        say what it wants, C{501} when this master has no such operation,
        C{500} (logged) for anything else.
        """
        error = failure.value
        answer: dict[str, Any] = {"operation": self._name, "error": str(error)}
        if isinstance(error, OperationRefused):
            answer["reason"] = error.reason.value
            return jsonResponse(request, answer, 409)
        if isinstance(error, BadArguments):
            return jsonResponse(request, answer, 400)
        if isinstance(error, NotImplementedError):
            return jsonResponse(request, answer, 501)
        log.failure("control: {operation} failed", failure,
                    cluster_event=logevents.CONTROL_OPERATION_FAILED, operation=self._name)
        return jsonResponse(request, answer, 500)


def appMetricsGatherer(service: Any, clock: IReactorTime) -> MetricsGatherer:
    """
    What reads the app's metrics from the live worker processes of
    C{service} (none before it starts).
    """

    def processes() -> list[Any]:
        supervisor = service.supervisor
        return [] if supervisor is None else list(supervisor.processes())

    return MetricsGatherer(clock, processes)


def controlResource(
    service: Any,
    status: Callable[[], dict[str, Any]],
    access: Access,
    clock: IReactorTime,
    gatherer: MetricsGatherer | None = None,
) -> Resource:
    """
    The control site's resource tree for C{service}: the page's files and
    the probes open to all, the rest behind C{access}.

    @param gatherer: reads the app's metrics from the workers (default: a
        new one for C{service}'s workers).
    """
    if gatherer is None:
        gatherer = appMetricsGatherer(service, clock)
    root = File(STATIC)
    root.putChild(b"status.json", _Status(access, status, gatherer))
    root.putChild(b"metrics", _Metrics(access, status, clock, gatherer))
    addProbes(root, service)
    for name, run in operations(service).items():
        root.putChild(name, _Operation(access, name.decode(), run, status))
    return root


#: Seconds a control connection may stay silent (before its request, or
#: between keep-alive requests) before it is closed: the site's connection
#: budget is small, and idle holders would lock operators and probes out.
CONTROL_IDLE_TIMEOUT = 10.0


def controlSite(resource: Any, reactor: IReactorTime) -> Any:
    """
    The L{Site} of the control plane: no access log, and connections that
    stay silent for L{CONTROL_IDLE_TIMEOUT} seconds closed, timed by
    C{reactor}.
    """
    site = quietSite(resource)
    site.noisy = False
    site.timeOut = CONTROL_IDLE_TIMEOUT
    site.reactor = reactor
    return site


def controlPlane(
    reactor: EndpointReactor, description: str | None
) -> Callable[[Any, int | None], "ControlServer | None"]:
    """
    What a L{ClusterService} is given to serve its control site on the
    C{--control} value C{description} (see L{resolveEndpoint}): the site is
    built when the service binds, with the master's pid known, on the
    control socket the service inherited from an old master if it did.

    @raise ControlError: now, when C{description} is not an endpoint string.
    """
    checkEndpoint(reactor, description)

    def build(service: Any, adoptFD: int | None) -> ControlServer | None:
        resolved = resolveEndpoint(description, os.getpid())
        if resolved is None:
            return None
        return ControlServer(reactor, service, resolved, adoptFD=adoptFD)

    return build


@implementer(IControlPlane)
class ControlServer:
    """
    The master's control site, bound to one endpoint.

    @ivar address: where it can be reached, once listening: C{unix:PATH}
        or C{http://HOST:PORT/}.
    @ivar history: the accepted-connections rate history for the chart.
    @ivar tokenFile: the file holding the token TCP clients must present,
        while a TCP site with authentication listens; else C{None}.
    """

    def __init__(
        self,
        reactor: EndpointReactor,
        service: Any,
        description: str,
        tokenPath: str | None = None,
        authenticate: bool | None = None,
        tokenFrom: str | None = None,
        adoptFD: int | None = None,
    ) -> None:
        """
        @param service: the cluster to show and control.
        @param description: a Twisted server endpoint string.
        @param tokenPath: where to write the token for a TCP site (default:
            the service's C{config.controlToken}, else L{defaultTokenPath}).
        @param authenticate: C{False} lets every peer in (default: the
            service's C{config.controlAuth}, else C{True}).
        @param tokenFrom: a file the operator made, whose token the site
            wants instead of a new one (default: the service's
            C{config.controlTokenFrom}); the master neither writes nor
            removes it.
        @param adoptFD: the listening socket this master inherited from the
            one it replaces (SIGUSR2), to serve on instead of binding the
            endpoint (which the old master still holds); this site owns it
            from then on, file included.
        """
        config = getattr(service, "config", None)
        self._reactor = reactor
        self._service = service
        self._description = description
        self._tokenPath = tokenPath if tokenPath is not None else getattr(
            config, "controlToken", None
        )
        enforce = authenticate if authenticate is not None else getattr(
            config, "controlAuth", True
        )
        self._tokenFrom = tokenFrom if tokenFrom is not None else getattr(
            config, "controlTokenFrom", None
        )
        self._access = Access(AccessPolicy(newToken(), os.getuid(), enforce), reactor)
        self.history = RateHistory(reactor, service.accepted)
        self._gatherer = appMetricsGatherer(service, reactor)
        self.address: str | None = None
        self.tokenFile: TokenFile | None = None
        self._port: IListeningPort | None = None
        self._adoptFD = adoptFD

    def status(self) -> dict[str, Any]:
        """
        The cluster's current L{clusterStatus} document.
        """
        series = self._gatherer.series
        return clusterStatus(
            self._service, self._reactor, self.history, self.address,
            appFigures=lambda process: series.figures((process.workerId, process.pid)),
        )

    def listen(self) -> None:
        """
        Bind the endpoint and serve; over TCP, write the token file; start
        sampling the connection rate.

        @raise ControlError: when the endpoint cannot be bound or the token
            file cannot be written.
        """
        if self._tokenFrom is not None and self._tokenPath is not None:
            raise ControlError("--control-token and --control-token-from exclude each other")
        if self._tokenFrom is not None and self._access.policy.enforce:
            try:
                token = loadToken(self._tokenFrom)
            except TokenFileError as e:
                raise ControlError(str(e)) from None
            self._access.policy = attr.evolve(self._access.policy, token=token)
        resource = controlResource(
            self._service, self.status, self._access, self._reactor, self._gatherer
        )
        site = controlSite(resource, self._reactor)
        endpoint = _parseEndpoint(self._reactor, self._description)
        try:
            # Under a budget: scraping must not starve the hand-off of
            # connections, which runs in the same reactor.
            factory = BudgetedFactory(site, self._reactor)
            if self._adoptFD is not None:
                fd, self._adoptFD = self._adoptFD, None
                self._port = adoptListener(
                    self._reactor, self._description, fd, factory
                ).port
            else:
                self._port = listenNow(endpoint, factory)
        except ListenError as e:
            raise ControlError(
                f"cannot serve --control on {self._description!r}: {e}"
            ) from None
        self.address = _portAddress(self._port, self._description)
        host: Any = self._port.getHost()
        try:
            self._writeToken(host)
        except ControlError:
            self._port.stopListening()
            self._port = None
            raise
        self.history.start()
        log.info("control site on {address}",
                 cluster_event=logevents.CONTROL_LISTENING, address=self.address)
        if not self._access.policy.enforce:
            log.warn(
                "control site on {address} checks no credentials (--control-no-auth): "
                "whoever can connect can restart and resize the cluster",
                address=self.address,
            )
        ip = getattr(host, "host", None)
        if ip is not None and not ipaddress.ip_address(ip.split("%")[0]).is_loopback:
            log.warn(
                "control site on {address} is reachable from other machines, in "
                "plain HTTP unless its endpoint is ssl:",
                address=self.address,
            )

    def _writeToken(self, host: Any) -> None:
        """
        Write the token file of a TCP site that checks credentials.

        @raise ControlError: when it cannot be written safely.
        """
        if getattr(host, "port", None) is None:
            if self._tokenPath is not None:
                log.warn(
                    "control token file {token_file} not written: on a UNIX socket "
                    "the peer's uid decides who gets in",
                    token_file=self._tokenPath,
                )
            return
        if not self._access.policy.enforce:
            return
        if self._tokenFrom is not None:
            log.info("control token from {token_file}", token_file=self._tokenFrom)
            return
        path = self._tokenPath
        if path is None:
            _privateDirectory(runtimeDirectory())
            _removeStale(runtimeDirectory())
            path = defaultTokenPath(host.port)
        tokenFile = TokenFile(os.path.abspath(path))
        try:
            tokenFile.create(self._access.policy.token)
        except TokenFileError as e:
            raise ControlError(str(e)) from None
        self.tokenFile = tokenFile
        log.info("control token in {token_file}",
                 cluster_event=logevents.CONTROL_TOKEN_WRITTEN, token_file=tokenFile.path)

    def fileno(self) -> int | None:
        """
        The listening socket's descriptor while listening, for a master
        upgrade to hand over; else C{None}.
        """
        sock = getattr(self._port, "socket", None)
        return None if sock is None else int(sock.fileno())

    def release(self) -> None:
        """
        Stop serving in this process only, for a master that handed its
        control socket to its successor: the socket is neither shut down
        nor its file removed (the new master serves on it next); the token
        file, this master's, is removed.
        """
        self.history.stop()
        port, self._port = self._port, None
        tokenFile, self.tokenFile = self.tokenFile, None
        if port is not None:
            port.stopReading()  # type: ignore[attr-defined]
            port.socket.close()  # type: ignore[attr-defined]
        if tokenFile is not None:
            tokenFile.remove()

    def stop(self) -> Deferred[None]:
        """
        Stop serving; remove a UNIX socket file and the token file.
        """
        self.history.stop()
        port, self._port = self._port, None
        tokenFile, self.tokenFile = self.tokenFile, None
        if port is None:
            return succeed(None)
        stopped: Deferred[Any] = maybeDeferred(port.stopListening)

        def removeToken(_: Any) -> None:
            if tokenFile is not None:
                tokenFile.remove()

        return stopped.addCallback(removeToken)
