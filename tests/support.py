"""
Run a real C{twist cluster} process from a trial test, and talk to it.

Every wait is bounded; every process started (the master and each worker it
reports) is SIGKILLed by pid in the test's clean-up, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from typing import Any, Callable, Sequence

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from twisted_cluster import logevents

#: The repository root: tests run the code in this tree.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: C{twist}, logging JSON on stdout.
TWIST = (sys.executable, "-m", "twisted", "--log-format=json")
#: C{twistd} in the foreground, logging JSON on stdout, no pid file.
TWISTD = (
    sys.executable, "-c",
    "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()",
    "--nodaemon", "--pidfile=", "--logger=tests.apps.jsonlog.observer",
)


def testEnvironment(extraPath: str | None = None) -> dict[str, str]:
    """
    The environment for a process under test: this tree first on the path
    (which also makes C{twist} find the plugin in C{twisted/plugins}).
    """
    env = dict(os.environ)
    paths = [ROOT] + ([extraPath] if extraPath else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    return env


def shortTempDir(testCase: Any) -> str:
    """
    A new directory with a short path, removed after the test: a UNIX
    socket's path must fit in 108 bytes, which a checkout's deep
    C{_trial_temp} path may not leave room for.
    """
    path = tempfile.mkdtemp(prefix="tc-")
    testCase.addCleanup(shutil.rmtree, path, True)
    return path


def acceptedFD(case: Any, greeting: bytes = b"", closeAtEnd: bool = False) -> int:
    """
    A connected pair standing in for a connection the master accepted: the
    server side's descriptor, as the master would hand it over.  The client
    side, which has sent C{greeting}, stays open until the end of C{case};
    with C{closeAtEnd}, so does the descriptor (if the code under test did
    not take it over and close it).
    """
    client, server = socket.socketpair()
    case.addCleanup(client.close)
    if greeting:
        client.send(greeting)
    fd = server.detach()
    if closeAtEnd:
        case.addCleanup(lambda: fdIsOpen(fd) and os.close(fd))
    return fd


def fdIsOpen(fd: int) -> bool:
    """
    Whether C{fd} is an open file descriptor of this process.
    """
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def pidAlive(pid: int) -> bool:
    """
    Whether C{pid} is a live process (a zombie counts as gone).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)  # type: ignore[attr-defined]
    return d


async def waitUntil(
    predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05
) -> Any:
    """
    Poll C{predicate} until it is true; fail the test after C{timeout}.
    """
    deadline = reactor.seconds() + timeout  # type: ignore[attr-defined]
    while True:
        value = predicate()
        if value:
            return value
        if reactor.seconds() > deadline:  # type: ignore[attr-defined]
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await sleep(step)


class _Output(ProcessProtocol):
    def __init__(self, cluster: "ClusterProcess") -> None:
        self._cluster = cluster
        self._partial = b""

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._cluster._line(line)

    def errReceived(self, data: bytes) -> None:
        self._cluster.stderr += data

    def processEnded(self, reason: Any) -> None:
        value = reason.value
        self._cluster.exitCode = getattr(value, "exitCode", None)
        self._cluster.exitSignal = getattr(value, "signal", None)
        self._cluster.ended.callback(self._cluster.exitCode)


class ClusterProcess:
    """
    A C{twist cluster} master process under test.

    @ivar events: every log event the master wrote (JSON), in order.
    @ivar workers: worker id -> pid of the workers that said ready, latest.
    @ivar started: every worker pid the master ever started.
    @ivar port: the TCP port it listens on, once known.
    """

    def __init__(self, testCase: TestCase) -> None:
        self.events: list[dict[str, Any]] = []
        self.workers: dict[int, int] = {}
        self.started: set[int] = set()
        self.stderr = b""
        self.port: int | None = None
        self.exitCode: int | None = None
        self.exitSignal: int | None = None
        self.ended: Deferred[int | None] = Deferred()
        self.pid: int | None = None
        testCase.addCleanup(self.kill)

    @classmethod
    async def start(
        cls,
        testCase: TestCase,
        *args: str,
        listen: str = "tcp:0:interface=127.0.0.1",
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        waitReady: int = 1,
        timeout: float = 30.0,
        prefix: Sequence[str] = (),
        program: Sequence[str] = TWIST,
        childFDs: dict[int, Any] | None = None,
    ) -> "ClusterProcess":
        """
        Start C{twist cluster ARGS --listen LISTEN}; wait until C{waitReady}
        workers are ready and the port is known (0 waits for nothing).

        @param program: the runner and its own options: L{TWIST} or
            L{TWISTD}, both logging JSON events on stdout.
        @param prefix: a command that runs (execs) the master's command line,
            given as its arguments; the master's pid is then the prefix's.
        @param childFDs: the master's file descriptors, as C{spawnProcess}
            takes them (default: stdin, stdout, stderr).
        """
        self = cls(testCase)
        argv = [*program, "cluster", *args]
        if listen:
            argv += ["--listen", listen]
        argv = [*prefix, *argv]
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            _Output(self), argv[0], argv,
            env=env if env is not None else testEnvironment(),
            path=cwd or ROOT,
            childFDs=childFDs,
        )
        self.pid = transport.pid
        if waitReady:
            await waitUntil(
                lambda: self.port is not None and len(self.workers) >= waitReady,
                timeout, f"{waitReady} ready workers",
            )
        return self

    def _line(self, line: bytes) -> None:
        try:
            event = json.loads(line.lstrip(b"\x1e"))
        except ValueError:
            return
        self.events.append(event)
        key = event.get("cluster_event")
        if key == logevents.LISTENING and self.port is None:
            address = event["address"]
            if not address.startswith("unix:"):
                self.port = int(address.rsplit(":", 1)[1])
        elif key == logevents.WORKER_STARTED:
            self.started.add(event["worker_pid"])
        elif key == logevents.WORKER_READY:
            self.workers[event["worker_id"]] = event["worker_pid"]

    def logged(self, key: str, **fields: Any) -> list[dict[str, Any]]:
        """
        The events the master logged with C{cluster_event} C{key} (one of
        L{twisted_cluster.logevents}) and the given field values, in order.
        """
        return [
            e for e in self.events
            if e.get("cluster_event") == key
            and all(e.get(name) == value for name, value in fields.items())
        ]

    def restarts(self) -> list[dict[str, Any]]:
        """
        The exits after which a slot restarts (they carry the C{delay}).
        """
        return [e for e in self.logged(logevents.WORKER_EXITED) if "delay" in e]

    def texts(self) -> list[str]:
        """
        The master's log as formatted lines.
        """
        from twisted.logger import formatEvent

        out = []
        for event in self.events:
            try:
                out.append(formatEvent(event))
            except Exception:
                out.append(str(event.get("log_format")))
        return out

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def signal(self, name: str) -> None:
        """
        Send the master a signal (C{"TERM"}, C{"HUP"}, ...).
        """
        assert self.pid is not None
        os.kill(self.pid, getattr(signal, f"SIG{name}"))

    async def waitExit(self, timeout: float = 30.0) -> int | None:
        """
        Wait for the master to exit; return its exit code.
        """
        await waitUntil(lambda: self.ended.called, timeout, "the master to exit")
        return self.exitCode

    async def kill(self) -> None:
        """
        SIGKILL the master and every worker it started, by pid.
        """
        for pid in [self.pid, *self.started]:
            if pid is not None and pidAlive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not self.ended.called:
            await waitUntil(lambda: self.ended.called, 10, "the killed master")
        await waitUntil(
            lambda: not any(pidAlive(p) for p in self.started), 10, "killed workers"
        )
