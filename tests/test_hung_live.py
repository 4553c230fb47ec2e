"""
Integration test of a hung worker's end: a real master and worker on
127.0.0.1; the worker's Python stacks reach the master's log before its
SIGKILL, and its replacement is ready within interval + timeout + 1 s plus
its start-up.
"""

from __future__ import annotations

import socket
import time

from twisted.trial.unittest import TestCase

from tests.support import ClusterProcess, pidAlive, waitUntil
from twisted_cluster import logevents


class HungWorkerTests(TestCase):
    timeout = 40

    async def test_stacksOfAHungWorkerReachTheLogThenItIsReplacedAtOnce(self) -> None:
        interval, timeout = 0.5, 1.0
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--app", "tests.apps.stuck.resource",
            "--health-interval", str(interval), "--health-timeout", str(timeout),
        )
        pid = cluster.workers[1]
        client = socket.create_connection(("127.0.0.1", cluster.port))
        self.addCleanup(client.close)
        client.sendall(b"GET /stuck HTTP/1.0\r\n\r\n")
        hangAt = time.time()
        [stacks] = await waitUntil(
            lambda: cluster.logged(logevents.WORKER_STACKS, worker_id=1),
            interval + timeout + 5, "the hung worker's stacks",
        )
        self.assertEqual(stacks["worker_pid"], pid)
        self.assertIn("blocked_in_stuck_function", stacks["stacks"])
        self.assertIn("background_thread_waits", stacks["stacks"])
        await waitUntil(
            lambda: cluster.workers[1] != pid and not pidAlive(pid),
            10, "the replacement",
        )
        [hung] = cluster.logged(logevents.WORKER_HUNG, worker_pid=pid)
        [exited] = cluster.logged(logevents.WORKER_EXITED, worker_pid=pid)
        self.assertEqual((exited["cause"], exited["how"]), ("hang", "signal KILL"))
        new = cluster.workers[1]
        [started] = cluster.logged(logevents.WORKER_STARTED, worker_pid=new)
        [ready] = cluster.logged(logevents.WORKER_READY, worker_pid=new)
        # The hang began when the request was sent.
        self.assertLess(exited["log_time"] - hung["log_time"], 1.0)
        startup = ready["log_time"] - started["log_time"]
        self.assertLess(ready["log_time"] - hangAt, interval + timeout + 1 + startup)
