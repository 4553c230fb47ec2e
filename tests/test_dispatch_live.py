"""
Integration tests of the dispatch policies (C{--dispatch}) and of the
waiting queue: a real master and workers on 127.0.0.1; every wait bounded,
every process killed.

The HTTP clients are blocking sockets run in a thread (with timeouts), so
that a test can hold connections open and pick its source address.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections import Counter

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.support import ClusterProcess, sleep, testEnvironment, waitUntil
from twisted_cluster import logevents


def _readResponse(sock: socket.socket) -> tuple[dict[str, str], bytes]:
    """
    Read one HTTP response with a Content-Length; (headers, body).  An empty
    header dict means the server closed the connection without answering.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return {}, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return headers, body


def request(
    port: int,
    source: str = "127.0.0.1",
    keepOpen: bool = False,
    path: str = "/",
    proxyHeader: bytes = b"",
) -> tuple[dict[str, str], bytes, socket.socket | None]:
    """
    One GET on a new connection from C{source}, after C{proxyHeader} (what
    a load balancer sends first); with C{keepOpen}, the connection stays
    open (keep-alive) and is returned.  Blocking: run it with
    L{deferToThread}.
    """
    sock = socket.socket()
    sock.settimeout(15)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    connection = "keep-alive" if keepOpen else "close"
    sock.sendall(
        proxyHeader
        + f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: {connection}\r\n\r\n".encode()
    )
    headers, body = _readResponse(sock)
    if keepOpen:
        return headers, body, sock
    sock.close()
    return headers, body, None


async def workerOf(port: int, **kwargs) -> tuple[str, socket.socket | None]:
    """
    Which worker answered a GET of the built-in page (its
    C{X-Cluster-Worker} header), and the connection if kept open.
    """
    headers, _, sock = await deferToThread(request, port, **kwargs)
    return headers["x-cluster-worker"], sock


def controlURL(cluster: ClusterProcess) -> str | None:
    for event in cluster.events:
        if event.get("cluster_event") == logevents.CONTROL_LISTENING:
            return event["address"]
    return None


async def clusterStatus(cluster: ClusterProcess) -> dict:
    url = await waitUntil(lambda: controlURL(cluster), 10, "the control site")
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    _, body, _ = await deferToThread(request, port, path="/status.json")
    return json.loads(body)


class LeastConnectionsTests(TestCase):
    timeout = 60

    async def test_newConnectionsGoAwayFromTheWorkerHoldingLongLivedOnes(self) -> None:
        """
        Six long-lived connections spread three per worker; once the three
        of one worker close, new connections all go to that worker, away
        from the one still holding three.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--dispatch", "least-connections", waitReady=2
        )
        held: dict[str, list[socket.socket]] = {"1": [], "2": []}
        try:
            for _ in range(6):
                worker, sock = await workerOf(cluster.port, keepOpen=True)
                held[worker].append(sock)
            self.assertEqual({w: len(s) for w, s in held.items()}, {"1": 3, "2": 3})
            for sock in held["1"]:
                sock.close()
            held["1"] = []
            # Let worker 1 report its closes (within its acknowledgement delay).
            await sleep(0.3)
            served = Counter()
            for _ in range(4):
                worker, _ = await workerOf(cluster.port)
                served[worker] += 1
            self.assertEqual(served, {"1": 4})
        finally:
            for socks in held.values():
                for sock in socks:
                    sock.close()


class StickyTests(TestCase):
    timeout = 60

    async def test_eachClientAddressStaysOnOneWorker(self) -> None:
        """
        Sixteen client addresses (127.0.0.2-17) make three connections each:
        every address is served by one worker, and the addresses are spread
        over both.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--dispatch", "sticky", waitReady=2
        )
        workers: dict[str, set[str]] = {}
        for _ in range(3):
            for i in range(2, 18):
                source = f"127.0.0.{i}"
                worker, _ = await workerOf(cluster.port, source=source)
                workers.setdefault(source, set()).add(worker)
        self.assertEqual({len(seen) for seen in workers.values()}, {1})
        self.assertEqual(set().union(*workers.values()), {"1", "2"})

    async def test_behindABalancerTheClientInTheProxyHeaderIsTheKey(self) -> None:
        """
        Behind a balancer that speaks the PROXY protocol every connection
        comes from the balancer (here 127.0.0.1); the client its header
        names is what stays on one worker.  Sixteen clients, three
        connections each, are spread over both workers.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--dispatch", "sticky", waitReady=2,
            listen="haproxy:tcp:0:interface=127.0.0.1",
        )
        workers: dict[str, set[str]] = {}
        for _ in range(3):
            for i in range(16):
                client = f"198.51.100.{i + 1}"
                header = f"PROXY TCP4 {client} 127.0.0.1 {40000 + i} {cluster.port}\r\n"
                worker, _ = await workerOf(cluster.port, proxyHeader=header.encode())
                workers.setdefault(client, set()).add(worker)
        self.assertEqual({len(seen) for seen in workers.values()}, {1})
        self.assertEqual(set().union(*workers.values()), {"1", "2"})


class SharedListenersTests(TestCase):
    timeout = 60

    async def test_workersAcceptThemselvesAndBothServe(self) -> None:
        """
        With C{--dispatch shared} the workers accept on the listening socket
        themselves: while one is blocked in a request, the other accepts and
        serves every new connection, so both serve; the master accepted
        none of them.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--dispatch", "shared",
            "--app", "tests.apps.sleepy.resource",
            "--control", "tcp:0:interface=127.0.0.1", "--control-no-auth", waitReady=2,
        )
        assert cluster.port is not None
        port = cluster.port
        blocked = deferToThread(request, port, path="/block?s=3")
        await sleep(0.5)  # whichever worker took it now sleeps in it
        others = [
            (await deferToThread(request, port))[1].decode() for _ in range(10)
        ]
        blockedBy = (await blocked)[1].decode()
        self.assertEqual(len(set(others)), 1, others)
        self.assertEqual(
            {blockedBy, *others}, {str(pid) for pid in cluster.workers.values()}
        )
        status = await clusterStatus(cluster)
        self.assertEqual(status["cluster"]["accepted"], 0)


class WaitingQueueTests(TestCase):
    timeout = 60

    async def test_connectionsWaitForAReadyWorkerUpToTheQueueLimit(self) -> None:
        """
        While the only worker restarts (its app takes 3 s to load), the
        master accepts and holds two connections (C{--queue-limit 2}) and
        hands them to the new worker once it is ready; the ones past the
        limit are closed at once and counted.
        """
        flag = self.mktemp()
        env = testEnvironment()
        env["SLOWSTART_FLAG"] = flag
        env["SLOWSTART_SECONDS"] = "3"
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--queue-limit", "2",
            "--app", "tests.apps.slowstart.resource", env=env, waitReady=1,
        )
        oldPid = cluster.workers[1]
        open(flag, "w").close()
        os.kill(oldPid, signal.SIGKILL)
        await waitUntil(
            lambda: cluster.logged(logevents.WORKER_EXITED, worker_pid=oldPid),
            10, "the master to notice the worker died",
        )

        def clients() -> list[bytes]:
            socks = [
                socket.create_connection(("127.0.0.1", cluster.port), timeout=15)
                for _ in range(4)
            ]
            bodies = []
            for sock in socks:
                try:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    bodies.append(_readResponse(sock)[1])
                except (ConnectionResetError, BrokenPipeError):
                    # Closed by the master: past the queue limit.
                    bodies.append(b"")
                finally:
                    sock.close()
            return bodies

        bodies = await deferToThread(clients)
        await waitUntil(lambda: cluster.workers[1] != oldPid, 10, "the new worker")
        newPid = cluster.workers[1]
        self.assertEqual(bodies, [str(newPid).encode()] * 2 + [b""] * 2)
        self.assertTrue(cluster.logged(logevents.QUEUE_FULL))
        handed = cluster.logged(logevents.QUEUE_RELEASED)
        self.assertEqual([(e["count"], e["dropped"]) for e in handed], [(2, 2)])
