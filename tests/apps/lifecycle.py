"""
Apps for the life-cycle tests (tests/test_lifecycle_live.py).

  - C{plain}: a plain protocol that declares no drain and says nothing of
    its idleness; it answers each line with the worker's pid; its
    factory logs its C{stopFactory} (field C{lifecycle_app}).
  - C{slowReady}: the same, whose C{workerStarted} takes
    C{LIFECYCLE_READY_DELAY} seconds (default 1.5), as opening a pool
    would; it logs when it is ready and each connection it builds
    (field C{lifecycle_app}, with C{at}: the time).
  - C{recorded}: C{plain} with master-side events that log every event
    they hear (field C{lifecycle_hook}, with the L{WorkerEvent}'s fields).
"""

from __future__ import annotations

import os
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from twisted_cluster import (
    ClusterApp,
    IWorkerContext,
    MasterEvents,
    WorkerEvent,
    WorkerHooks,
)

log = Logger()


class Pid(LineReceiver):
    delimiter = b"\n"

    def connectionMade(self) -> None:
        log.info("connection built", lifecycle_app="connection", at=time.time())

    def lineReceived(self, line: bytes) -> None:
        self.sendLine(str(os.getpid()).encode())


class PidFactory(Factory):
    protocol = Pid

    def stopFactory(self) -> None:
        log.info("factory stopped", lifecycle_app="stopFactory", at=time.time())


plain = PidFactory()


class SlowReady(Factory, WorkerHooks):
    protocol = Pid

    def __init__(self, context: IWorkerContext) -> None:
        self.context = context

    async def workerStarted(self) -> None:
        delay = float(os.environ.get("LIFECYCLE_READY_DELAY", "1.5"))
        await deferLater(self.context.clock, delay, lambda: None)
        log.info("app ready", lifecycle_app="ready", at=time.time())


slowReady = ClusterApp(app=SlowReady)


class Recorder(MasterEvents):
    def __init__(self, master: Any) -> None:
        self.master = master

    def _log(self, hook: str, event: WorkerEvent | None = None) -> None:
        fields: dict[str, Any] = {}
        if event is not None:
            fields = {
                "worker_id": event.workerId, "worker_pid": event.pid,
                "cause": event.cause, "exit_code": event.exitCode,
                "exit_signal": event.signal,
            }
        log.info("hook {lifecycle_hook}", lifecycle_hook=hook, **fields)

    def workerStarted(self, event: WorkerEvent) -> None:
        self._log("started", event)

    def workerReady(self, event: WorkerEvent) -> None:
        self._log("ready", event)

    def workerDraining(self, event: WorkerEvent) -> None:
        self._log("draining", event)

    def workerExited(self, event: WorkerEvent) -> Deferred[None]:
        # An asynchronous hook is fine too.
        from twisted.internet import reactor

        return deferLater(reactor, 0, self._log, "exited", event)

    def clusterReady(self) -> None:
        self._log("clusterReady")

    def clusterStopping(self) -> None:
        self._log("clusterStopping")


recorded = ClusterApp(app=plain, masterEvents=Recorder)


class BrokenStart(Factory, WorkerHooks):
    """
    An app whose pool cannot be opened: its C{workerStarted} fails.
    """

    protocol = Pid

    def workerStarted(self) -> Deferred[None]:
        from twisted.internet.defer import fail

        return fail(ConnectionRefusedError("the database is down"))


brokenStart = BrokenStart()
