"""
Integration tests of the hand-off under faults: a worker out of file
descriptors, a stopped worker.  A real master and workers on 127.0.0.1;
every wait bounded, every process killed by pid (L{ClusterProcess}).

The clients are blocking sockets in threads, with time-outs.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import threading
import time

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from benchmarks.chaos import leaveRoom
from tests.support import ClusterProcess, pidAlive, sleep, waitUntil
from twisted_cluster import logevents

_REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"


def descriptorCount(pid: int) -> int:
    """
    How many descriptors process C{pid} has open.
    """
    return len(os.listdir(f"/proc/{pid}/fd"))


class _Clients:
    """
    Keep-alive clients that each sent one request: which were answered,
    which were closed without an answer, which still wait.
    """

    def __init__(self, port: int, count: int) -> None:
        self.waiting: dict[socket.socket, bytes] = {}
        self.answered: list[socket.socket] = []
        self.closed: list[socket.socket] = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(_REQUEST)
            sock.setblocking(False)
            self.waiting[sock] = b""

    def collect(self, seconds: float) -> None:
        """
        Read answers and closes for C{seconds} (blocking: run it in a
        thread).
        """
        selector = selectors.DefaultSelector()
        for sock in self.waiting:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + seconds
        while self.waiting and time.monotonic() < deadline:
            for key, _ in selector.select(deadline - time.monotonic()):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except (ConnectionResetError, BlockingIOError) as e:
                    if isinstance(e, BlockingIOError):
                        continue
                    data = b""
                if data:
                    self.waiting[sock] += data  # type: ignore[index]
                    if b"\r\n\r\n" not in self.waiting[sock]:  # type: ignore[index]
                        continue
                    self.answered.append(sock)  # type: ignore[arg-type]
                else:
                    self.closed.append(sock)  # type: ignore[arg-type]
                selector.unregister(sock)
                del self.waiting[sock]  # type: ignore[arg-type]
        selector.close()

    def closeAnswered(self) -> int:
        count = len(self.answered)
        for sock in self.answered:
            sock.close()
        self.answered = []
        return count

    def closeAll(self) -> None:
        for sock in [*self.waiting, *self.answered, *self.closed]:
            sock.close()


class DescriptorExhaustionTests(TestCase):
    timeout = 90

    async def test_workersOutOfDescriptorsLoseNoConnection(self) -> None:
        """
        Two workers with room for 12 more descriptors each and 60
        keep-alive clients: the workers answer what they can hold, return
        the rest to the master (logged once per worker, with its id and
        pid), and those wait in the master instead of being lost; as the
        answered clients leave, the waiting ones are answered in turn.
        Then the master holds as many descriptors as before.
        """
        cluster = await ClusterProcess.start(self, "--workers", "2", waitReady=2)
        assert cluster.pid is not None and cluster.port is not None
        baseline = descriptorCount(cluster.pid)
        workers = dict(cluster.workers)
        for pid in workers.values():
            leaveRoom(pid, 12)
        clients = _Clients(cluster.port, 60)
        self.addCleanup(clients.closeAll)
        answered = 0
        for _ in range(12):
            await deferToThread(clients.collect, 1.5)
            self.assertEqual(clients.closed, [])
            answered += clients.closeAnswered()
            if not clients.waiting:
                break
        self.assertEqual((answered, len(clients.waiting)), (60, 0))
        refusals = {
            (e["worker_id"], e["worker_pid"]) for e in cluster.logged(logevents.WORKER_FULL)
        }
        self.assertEqual(refusals, set(workers.items()))
        self.assertEqual(set(cluster.workers.items()), set(workers.items()))
        await waitUntil(
            lambda: descriptorCount(cluster.pid) == baseline, 10,  # type: ignore[arg-type]
            "the master's descriptors back to their baseline",
        )


class _ClosedLoop:
    """
    C{count} threads of sequential GETs, each on a new connection, until
    stopped; when each request was answered, which failed, and when each
    request still waiting for its answer was sent.
    """

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.answeredAt: list[float] = []
        self.waitingSince: dict[int, float] = {}
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(count)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.is_set():
            self.waitingSince[me] = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
                if data.startswith(b"HTTP/1.1 200"):
                    self.answeredAt.append(time.monotonic())
                else:
                    self.failed.append(f"answer {data[:20]!r}")
            except OSError as e:
                self.failed.append(type(e).__name__)
            finally:
                self.waitingSince.pop(me, None)

    def waitingSent(self, after: float, before: float) -> int:
        """
        How many requests sent between C{after} and C{before} are still
        waiting for their answer.
        """
        return sum(after < since < before for since in list(self.waitingSince.values()))

    def answeredBetween(self, start: float, end: float) -> int:
        return sum(start <= t < end for t in list(self.answeredAt))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(25)


class StoppedWorkerTests(TestCase):
    timeout = 90

    async def test_aStoppedWorkerCostsOnlyWhatItHolds(self) -> None:
        """
        Eight closed-loop clients, two workers, and one worker gets
        SIGSTOP: the other keeps serving (the stopped one is passed over
        within L{STALL_AFTER}, not after the 9 s a health check takes), the
        master logs the stall with the worker's id and pid, and once the
        worker resumes it answers the requests it held: none was handed to
        a second worker, none fails.  No request sent once the stall is
        noticed waits for the stopped worker: what was still queued in its
        hand-off channel went to the other one.
        """
        cluster = await ClusterProcess.start(self, "--workers", "2", waitReady=2)
        assert cluster.port is not None
        stopped = cluster.workers[1]
        load = _ClosedLoop(cluster.port, 8)
        self.addCleanup(load.stop)

        def resume() -> None:
            if pidAlive(stopped):
                os.kill(stopped, signal.SIGCONT)

        await sleep(1)
        os.kill(stopped, signal.SIGSTOP)
        self.addCleanup(resume)
        stoppedAt = time.monotonic()
        await waitUntil(
            lambda: cluster.logged(logevents.WORKER_STALLED, worker_pid=stopped),
            10, "the stall to be logged",
        )
        await sleep(max(stoppedAt + 2.5 - time.monotonic(), 0))
        served = load.answeredBetween(stoppedAt + 0.5, stoppedAt + 2.5)
        # Sent well after the stop, and unanswered for a second since: held
        # by the stopped worker (the other answers in milliseconds).
        capturedLate = load.waitingSent(stoppedAt + 0.5, time.monotonic() - 1.0)
        resume()
        await waitUntil(
            lambda: cluster.logged(logevents.WORKER_UNSTALLED, worker_pid=stopped),
            10, "the worker to acknowledge again",
        )
        await deferToThread(load.stop)
        self.assertGreater(served, 50)
        self.assertEqual(load.failed, [])
        [stall] = cluster.logged(logevents.WORKER_STALLED, worker_pid=stopped)
        self.assertEqual(stall["worker_id"], 1)
        self.assertEqual(capturedLate, 0)
