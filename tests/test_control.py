"""
Unit tests of L{twisted_cluster._control.site}: the control site's resources on
fakes, and the choice of the default endpoint.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from tests.observability_fakes import FakeService, twoWorkers
from tests.support import shortTempDir
from twisted_cluster import logevents
from twisted_cluster._control.auth import Access, AccessPolicy
from twisted_cluster._control.metrics import clusterStatus
from twisted_cluster._control.site import (
    ControlError,
    checkEndpoint,
    controlResource,
    controlSockets,
    defaultEndpoint,
    resolveEndpoint,
    runtimeDirectory,
)

#: The token the sites under test want.
TOKEN = "s3cret-token"

#: A TCP peer on the loopback.
LOOPBACK = IPv4Address("TCP", "127.0.0.1", 40000)


def call(
    service: FakeService, method: bytes, path: str, header: bool = True,
    host: bytes = b"127.0.0.1:9100", token: str | None = TOKEN,
    peer: Any = LOOPBACK, access: Access | None = None, clock: Clock | None = None,
    uid: int | None = None,
) -> tuple[int, bytes]:
    """
    Send one request to the control site of C{service}, whose token is
    L{TOKEN}; the status code and the body.

    @param token: sent as a bearer token when not C{None}.
    @param peer: the client's address (a L{UNIXAddress} for a UNIX socket
        peer, whose uid is then C{uid}).
    """
    clock = clock or Clock()
    if access is None:
        access = Access(
            AccessPolicy(TOKEN, os.getuid()), clock,
            credentials=lambda transport: None if uid is None else (4321, uid),
        )
    path, _, query = path.partition("?")
    request = DummyRequest(path.encode().split(b"/")[1:])
    request.method = method
    request.uri = request.path = path.encode()
    request.client = peer
    request.transport = None
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        request.addArg(key.encode(), value.encode())
    if header:
        request.requestHeaders.addRawHeader(b"X-Cluster-Control", b"1")
    if token is not None:
        request.requestHeaders.addRawHeader(b"authorization", f"Bearer {token}".encode())
    request.requestHeaders.addRawHeader(b"host", host)
    root = controlResource(service, lambda: clusterStatus(service, Clock()), access, clock)
    body = getChildForRequest(root, request).render(request)
    return request.responseCode or 200, body


def target(service: FakeService) -> int:
    return int(clusterStatus(service, Clock())["cluster"]["target"])


class StatusResourceTests(SynchronousTestCase):
    def test_statusJsonIsTheStatusDocument(self) -> None:
        """
        C{GET /status.json} answers the cluster's status document.
        """
        service = twoWorkers()
        code, body = call(service, b"GET", "/status.json")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body), clusterStatus(service, Clock()))

    def test_metricsAreInThePrometheusTextFormat(self) -> None:
        """
        C{GET /metrics} answers the Prometheus exposition.
        """
        code, body = call(twoWorkers(), b"GET", "/metrics")
        self.assertEqual(code, 200)
        self.assertIn(b'twisted_cluster_workers{state="ready"} 2.0', body)


class OperationTests(SynchronousTestCase):
    def test_addStartsAWorker(self) -> None:
        """
        C{POST /add} adds a worker and answers 202 with the new status.
        """
        service = twoWorkers()
        code, body = call(service, b"POST", "/add")
        self.assertEqual(code, 202)
        self.assertEqual(json.loads(body)["status"]["cluster"]["target"], 3)

    def test_removingTheLastWorkerIsRefused(self) -> None:
        """
        When the cluster refuses an operation, the answer is 409 with the
        reason.
        """
        service = twoWorkers()
        self.assertEqual(call(service, b"POST", "/remove")[0], 202)
        code, body = call(service, b"POST", "/remove")
        self.assertEqual(code, 409)
        self.assertIn("refused", json.loads(body)["error"])
        assert service.supervisor is not None
        self.assertEqual(list(service.supervisor.slots), [1])

    def test_restartIsAnsweredWhileTheRollOutRuns(self) -> None:
        """
        A roll-out takes long: C{POST /restart} starts it and answers 202 at
        once.
        """
        service = twoWorkers()
        code, _ = call(service, b"POST", "/restart")
        self.assertEqual((code, len(service.rollouts)), (202, 1))
        self.assertFalse(service.rollouts[0].called)

    def test_scaleAddsOrRemovesUntilTheTarget(self) -> None:
        """
        C{POST /scale?workers=N} adds or removes workers until N are wanted.
        """
        service = twoWorkers()
        assert service.supervisor is not None
        self.assertEqual(call(service, b"POST", "/scale?workers=4")[0], 202)
        self.assertEqual(sorted(service.supervisor.slots), [1, 2, 3, 4])
        self.assertEqual(call(service, b"POST", "/scale?workers=1")[0], 202)
        self.assertEqual(sorted(service.supervisor.slots), [1])

    def test_scaleNeedsAPositiveNumber(self) -> None:
        """
        C{scale} with no number, or 0, is a bad request (400) and changes
        nothing.
        """
        service = twoWorkers()
        for path in ("/scale", "/scale?workers=0", "/scale?workers=x"):
            self.assertEqual(call(service, b"POST", path)[0], 400, path)
        assert service.supervisor is not None
        self.assertEqual(sorted(service.supervisor.slots), [1, 2])

    def test_scaleBeyondMaxWorkersIsRefusedAndChangesNothing(self) -> None:
        """
        A typo such as C{scale 100000} must not fork the machine to death.
        """
        service = twoWorkers()
        code, body = call(service, b"POST", "/scale?workers=17")
        self.assertEqual(code, 409)
        self.assertIn("--max-workers is 16", json.loads(body)["error"])
        assert service.supervisor is not None
        self.assertEqual(sorted(service.supervisor.slots), [1, 2])

    def test_operationsNeedTheControlHeader(self) -> None:
        """
        Without the C{X-Cluster-Control} header (which a cross-site form
        cannot send), an operation is forbidden and not run.
        """
        service = twoWorkers()
        code, _ = call(service, b"POST", "/add", header=False)
        self.assertEqual(code, 403)
        self.assertEqual(clusterStatus(service, Clock())["cluster"]["target"], 2)

    def test_operationsNeedAnAddressAsHost(self) -> None:
        """
        An operation sent to a DNS name is forbidden (a re-bound name would
        make a foreign page same-origin); IP addresses and C{localhost},
        as the browser on this machine and C{ctl} send them, are fine.
        """
        service = twoWorkers()
        self.assertEqual(call(service, b"POST", "/add", host=b"evil.example:9100")[0], 403)
        self.assertEqual(clusterStatus(service, Clock())["cluster"]["target"], 2)
        for host in (b"localhost", b"127.0.0.1:9100", b"[::1]:9100", b"::1"):
            self.assertEqual(call(service, b"POST", "/add", host=host)[0], 202, host)

    def test_operationsNeedPost(self) -> None:
        """
        C{GET} on an operation does nothing and answers 405.
        """
        service = twoWorkers()
        self.assertEqual(call(service, b"GET", "/add")[0], 405)
        self.assertEqual(clusterStatus(service, Clock())["cluster"]["target"], 2)

    def test_missingOperationIsNotImplemented(self) -> None:
        """
        A master without an operation answers 501.
        """
        service = twoWorkers()
        service.rollingRestart = None  # type: ignore[assignment]
        self.assertEqual(call(service, b"POST", "/restart")[0], 501)


class AuthenticationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events = EventLoggingObserver()
        globalLogPublisher.addObserver(self.events)
        self.addCleanup(globalLogPublisher.removeObserver, self.events)

    def logged(self, key: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("cluster_event") == key]

    def test_operationWithoutTheTokenIs401AndChangesNothing(self) -> None:
        """
        Over TCP, an operation without the token, or with a wrong one, is
        answered 401 and does not run.
        """
        service = twoWorkers()
        for token in (None, "wrong", TOKEN + "x", ""):
            for path in ("/add", "/scale?workers=5", "/restart", "/remove"):
                code, _ = call(service, b"POST", path, token=token)
                self.assertEqual(code, 401, (token, path))
        self.assertEqual((target(service), service.rollouts), (2, []))

    def test_readingTheFiguresNeedsTheTokenToo(self) -> None:
        """
        C{/status.json} and C{/metrics} say what the cluster runs: they need
        the token as well.
        """
        service = twoWorkers()
        for path in ("/status.json", "/metrics"):
            self.assertEqual(call(service, b"GET", path, token=None)[0], 401, path)
            self.assertEqual(call(service, b"GET", path)[0], 200, path)

    def test_probesAndThePageAreOpen(self) -> None:
        """
        Load balancers probe without credentials, and the page's own files
        hold no figures: they answer without a token.
        """
        service = twoWorkers()
        service.stopping = False  # type: ignore[attr-defined]
        service.workerTable = lambda: [{"state": "ready"}]  # type: ignore[attr-defined]
        for path in ("/healthz", "/readyz", "/status.js"):
            self.assertEqual(call(service, b"GET", path, token=None)[0], 200, path)

    def test_operationIsLoggedWithWhoAsked(self) -> None:
        """
        Each operation is logged once, with the peer and how it proved who
        it is.
        """
        service = twoWorkers()
        call(service, b"POST", "/add")
        [event] = self.logged(logevents.CONTROL_OPERATION)
        self.assertEqual(
            {k: event[k] for k in ("operation", "peer", "peer_uid", "authenticated", "how")},
            {"operation": "add", "peer": "127.0.0.1:40000", "peer_uid": None,
             "authenticated": True, "how": "token"},
        )

    def test_refusalsAreLoggedRateLimitedWithoutTheToken(self) -> None:
        """
        A refusal is logged with the peer and the reason; a flood of them
        gives one event per interval, which counts the ones not logged.
        The token, even a wrong one in the query, is never logged.
        """
        service = twoWorkers()
        clock = Clock()
        access = Access(AccessPolicy(TOKEN, os.getuid()), clock)
        for _ in range(5):
            call(service, b"POST", "/add?token=guess", token="guess", access=access, clock=clock)
        clock.advance(10)
        call(service, b"POST", "/add", token=None, access=access, clock=clock)
        refusals = self.logged(logevents.CONTROL_REFUSED)
        self.assertEqual(
            [(e["reason"], e["suppressed"], e["peer"]) for e in refusals],
            [("wrong token", 0, "127.0.0.1:40000"), ("no token", 4, "127.0.0.1:40000")],
        )
        self.assertNotIn("guess", repr(list(self.events)))

    def test_refusalLogShowsNoControlCharacters(self) -> None:
        """
        The path in a refusal's log is the client's: control characters in
        it do not reach the log line.
        """
        call(twoWorkers(), b"POST", "/add/\x1b[2J\n", token=None)
        [refusal] = self.logged(logevents.CONTROL_REFUSED)
        self.assertEqual(refusal["path"], "/add/?[2J?")
        self.assertEqual(self.logged(logevents.CONTROL_OPERATION), [])

    def test_unixPeerOfAnotherUidIsRefused(self) -> None:
        """
        Over a UNIX socket, the peer's uid decides: the master's own and
        root get in without a token, any other is refused.
        """
        service = twoWorkers()
        unix = UNIXAddress(b"/run/c.sock")
        self.assertEqual(call(service, b"POST", "/add", token=None, peer=unix,
                              uid=os.getuid() + 1)[0], 401)
        self.assertEqual(target(service), 2)
        self.assertEqual(call(service, b"POST", "/add", token=None, peer=unix,
                              uid=os.getuid())[0], 202)
        self.assertEqual(call(service, b"POST", "/add", token=None, peer=unix, uid=0)[0], 202)
        self.assertEqual(target(service), 4)
        event = self.logged(logevents.CONTROL_OPERATION)[0]
        self.assertEqual((event["peer_uid"], event["peer_pid"], event["how"]),
                         (os.getuid(), 4321, "peer uid"))

    def test_unixPeerWithUnknownCredentialsIsRefused(self) -> None:
        """
        When the kernel does not say who connected, nobody is let in.
        """
        service = twoWorkers()
        code, _ = call(service, b"POST", "/add", peer=UNIXAddress(b"/c.sock"), uid=None)
        self.assertEqual((code, target(service)), (401, 2))

    def test_optOutLetsEveryoneInAndSaysSo(self) -> None:
        """
        With authentication off, an operation without a token runs and is
        logged as not authenticated.
        """
        service = twoWorkers()
        access = Access(AccessPolicy(TOKEN, os.getuid(), enforce=False), Clock())
        self.assertEqual(call(service, b"POST", "/add", token=None, access=access)[0], 202)
        [event] = self.logged(logevents.CONTROL_OPERATION)
        self.assertEqual((event["authenticated"], event["how"]), (False, "authentication is off"))


class MetricsCacheTests(SynchronousTestCase):
    def test_metricsAreRenderedAtMostOncePerSecond(self) -> None:
        """
        Scrapes within a second get the text rendered by the first one; the
        next second renders afresh.
        """
        service = twoWorkers()
        clock = Clock()
        access = Access(AccessPolicy(TOKEN, os.getuid()), clock)
        root = controlResource(service, lambda: clusterStatus(service, clock), access, clock)
        metrics = root.children[b"metrics"]

        def scrape() -> bytes:
            request = DummyRequest([])
            request.client = LOOPBACK
            request.requestHeaders.addRawHeader(b"authorization", f"Bearer {TOKEN}".encode())
            return bytes(metrics.render(request))

        first = scrape()
        service.acceptedCount = 99
        clock.advance(0.5)
        self.assertEqual(scrape(), first)
        clock.advance(0.5)
        self.assertIn(b"twisted_cluster_connections_accepted_total 99.0", scrape())


class EndpointTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.runtime = os.path.join(shortTempDir(self), "run")
        os.mkdir(self.runtime, 0o700)
        self.patch(os, "environ", dict(os.environ, XDG_RUNTIME_DIR=self.runtime))

    def test_defaultIsAPrivateUnixSocketNamedAfterThePid(self) -> None:
        """
        C{auto} is a UNIX socket of mode 0600, named after the master's pid,
        in a directory of mode 0700 under C{$XDG_RUNTIME_DIR}.
        """
        description = resolveEndpoint("auto", 4242)
        directory = os.path.join(self.runtime, "twisted-cluster")
        self.assertEqual(
            description, f"unix:{directory}/4242.sock:mode=600:lockfile=1"
        )
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        self.assertEqual(runtimeDirectory(), directory)

    def test_noneDisablesTheControlSite(self) -> None:
        """
        C{none} (or no value) means no control site.
        """
        self.assertIsNone(resolveEndpoint("none", 1))
        self.assertIsNone(resolveEndpoint(None, 1))
        self.assertEqual(resolveEndpoint("tcp:0", 1), "tcp:0")

    def test_unixEndpointWithoutModeIsPrivate(self) -> None:
        """
        A C{unix:} endpoint that sets no mode gets mode 0600 rather than
        Twisted's 0666: other local users cannot operate the cluster.
        """
        self.assertEqual(
            resolveEndpoint("unix:/run/app/control.sock", 1),
            "unix:/run/app/control.sock:mode=600",
        )
        self.assertEqual(
            resolveEndpoint("unix:address=/run/c.sock:lockfile=1", 1),
            "unix:address=/run/c.sock:lockfile=1:mode=600",
        )

    def test_unixEndpointKeepsTheUsersMode(self) -> None:
        for description in ("unix:/run/c.sock:mode=660", "unix:mode=640:/run/c.sock"):
            self.assertEqual(resolveEndpoint(description, 1), description)

    def test_unixSocketWithoutModeIsListenedWithMode0600(self) -> None:
        """
        Twisted is asked to create the socket of a C{unix:PATH} control
        endpoint with mode 0600.
        """
        from twisted.internet.protocol import Factory
        from twisted.internet.testing import MemoryReactor

        from twisted_cluster._control.site import _parseEndpoint

        reactor = MemoryReactor()
        _parseEndpoint(reactor, resolveEndpoint("unix:/run/c.sock", 1)).listen(Factory())
        [(path, _, _, mode, _)] = reactor.unixServers
        self.assertEqual((path, mode), ("/run/c.sock", 0o600))

    def test_commandLineDefaultIsAutoAndNoneIsOff(self) -> None:
        """
        C{twist cluster} serves the private default unless told
        C{--control none}.
        """
        from twisted_cluster.tap import Options

        options = Options()
        options.parseOptions(["--workers", "1"])
        self.assertEqual(options.config().control, "auto")
        options = Options()
        options.parseOptions(["--workers", "1", "--control", "none"])
        self.assertIsNone(options.config().control)

    def test_commandLineTokenFileAndOptOut(self) -> None:
        """
        C{--control-token} names the token file (made absolute: C{twistd}
        may change directory), C{--control-no-auth} turns the checks off;
        by default they are on.
        """
        from twisted_cluster.tap import Options

        options = Options()
        options.parseOptions(["--workers", "1"])
        self.assertEqual((options.config().controlToken, options.config().controlAuth),
                         (None, True))
        options = Options()
        options.parseOptions(["--workers", "1", "--control-token", "t.token",
                              "--control-no-auth"])
        self.assertEqual((options.config().controlToken, options.config().controlAuth),
                         (os.path.abspath("t.token"), False))

    def test_socketsOfDeadMastersAreRemoved(self) -> None:
        """
        Choosing the default endpoint removes the sockets that killed
        masters left, and keeps those of live ones.
        """
        directory = os.path.join(self.runtime, "twisted-cluster")
        os.mkdir(directory, 0o700)
        dead = 2**22 + 1  # above the kernel's pid_max default
        for name in (f"{dead}.sock", f"{dead}.sock.lock", f"{os.getpid()}.sock"):
            open(os.path.join(directory, name), "w").close()
        defaultEndpoint(os.getpid() + 1)
        self.assertEqual(
            controlSockets(directory),
            [(os.getpid(), os.path.join(directory, f"{os.getpid()}.sock"), True)],
        )
        self.assertFalse(os.path.exists(os.path.join(directory, f"{dead}.sock.lock")))

    def test_tokenFilesOfDeadMastersAreRemoved(self) -> None:
        """
        Token files whose lock names a dead master are removed; those of a
        live master, and files that are no token files of ours, are kept.
        """
        from twisted_cluster._control.auth import TokenFile

        directory = os.path.join(self.runtime, "twisted-cluster")
        os.mkdir(directory, 0o700)
        live = TokenFile(os.path.join(directory, "tcp-1.token"))
        live.create("a")
        self.addCleanup(live.remove)
        for name in ("tcp-2.token", "tcp-3.token"):
            fd = os.open(os.path.join(directory, name), os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
            os.symlink(str(2**22 + 1), os.path.join(directory, name + ".lock"))
        os.chmod(os.path.join(directory, "tcp-3.token"), 0o644)
        defaultEndpoint(os.getpid())
        self.assertEqual(
            sorted(os.listdir(directory)), ["tcp-1.token", "tcp-1.token.lock", "tcp-3.token"]
        )

    def test_sharedDirectoryOpenToOthersIsRefused(self) -> None:
        """
        A control directory that others may enter is not used.
        """
        directory = os.path.join(self.runtime, "twisted-cluster")
        os.mkdir(directory)
        os.chmod(directory, 0o755)
        self.assertRaises(ControlError, defaultEndpoint, 1)

    def test_malformedEndpointIsRejectedEarly(self) -> None:
        """
        A typo in C{--control} is an error before anything starts.
        """
        error = self.assertRaises(ControlError, checkEndpoint, None, "tpc:80")
        self.assertIn("--control", str(error))
