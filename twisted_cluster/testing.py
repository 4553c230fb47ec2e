"""
Helpers to test an application that runs in a cluster, with trial.

Two kinds, for two kinds of tests:

  - L{FakeCluster}: the master and N workers of your app in the test's own
    process, talking AMP over in-memory connections.  No process, no socket,
    no reactor: a L{twisted.internet.task.Clock} drives the timeouts.  For
    unit tests of your commands and responders (in a
    L{twisted.trial.unittest.SynchronousTestCase}).
  - L{startCluster}: a real cluster with your app, in-process master and
    real worker processes, on an ephemeral port of 127.0.0.1.  For
    end-to-end tests (in a L{twisted.trial.unittest.TestCase}); it stops
    the cluster when the test ends, leaving no process and a clean reactor.

Both run the very code of the cluster (the same responders, relay and
broadcast logic, size checks and error mapping), so what passes here
behaves the same under C{twist cluster}.
"""

from __future__ import annotations

import os
import sys
from typing import Any, cast

import attr
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock, deferLater
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test import iosim

from twisted_cluster._contract.amp import ControlAMP
from twisted_cluster._control.site import controlPlane
from twisted_cluster._master.config import ClusterConfig
from twisted_cluster._master.masterevents import appMasterEvents
from twisted_cluster._master.routing import (
    ForwardingMasterContext,
    RelayLocator,
    WorkerCalls,
)
from twisted_cluster._master.service import ClusterService
from twisted_cluster._supervision.process import KILL, STOPPED, ProcessReactor
from twisted_cluster._worker.apphooks import AppHooks
from twisted_cluster.apploading import (
    AppLoadError,
    buildWorkerApp,
    buildWorkerHooks,
    checkApp,
    resolveName,
)
from twisted_cluster.calling import AppResponders
from twisted_cluster.clusterapp import ClusterApp, makeLocator
from twisted_cluster.contexts import IMasterContext, WorkerContext
from twisted_cluster.errors import ClusterFailed
from twisted_cluster.lifecycle import WorkerEvent

__all__ = ["ClusterFailed", "FakeCluster", "FakeWorker", "RunningCluster", "startCluster"]


# In-process fakes


@attr.s(auto_attribs=True)
class FakeWorker:
    """
    One worker of a L{FakeCluster}.

    @ivar workerId: its id.
    @ivar context: the L{twisted_cluster.IWorkerContext} its app was given;
        call the master or other workers with it.
    @ivar app: the resource or protocol factory its app built.
    @ivar responders: the locator of its worker-side responders, or C{None}.
    @ivar hooks: its app's L{twisted_cluster.IWorkerHooks}, as the worker
        runtime calls them.
    @ivar started: the outcome of its app's C{workerStarted} hooks (a real
        worker says C{Ready} when it fires).
    """

    workerId: int
    context: WorkerContext
    app: Any
    responders: Any
    hooks: AppHooks
    started: Deferred[Any]
    _pump: iosim.IOPump


class FakeCluster(ForwardingMasterContext):
    """
    A master and C{workers} workers of C{app}, in this process.

    Calls travel as real AMP boxes over in-memory connections; nothing moves
    until you L{flush}, and time only passes when you advance L{clock}.

        cluster = FakeCluster(hitcounter.app, workers=2)
        d = cluster.workers[1].context.callMaster(Hit, path="/")
        self.assertEqual(cluster.result(d), {"hits": 1})

    @ivar clock: the clock of every timeout, and the workers' and the
        master's C{context.clock}; advance it to time calls out.
    @ivar workers: the ready workers, by id.
    @ivar draining: the workers that drain (L{drain}) and are still alive,
        by id: they still receive C{broadcast} and C{callWorker}.
    @ivar masterResponders: the locator of the app's master-side responders
        (built with this object as their L{IMasterContext}), or C{None}.
    """

    def __init__(self, app: Any, workers: int = 2, clock: Clock | None = None) -> None:
        """
        @param app: a L{ClusterApp} or anything else C{--app} accepts, as an
            object or as its dotted name.
        @param workers: how many workers, with ids 1 to C{workers}.
        """
        self.clock = clock if clock is not None else Clock()
        if isinstance(app, str):
            app = resolveName(app)
        self._app = app
        self._calls = WorkerCalls(self.clock, self._connections, self._drainingConnections)
        masterResponders = app.masterResponders if isinstance(app, ClusterApp) else None
        self.masterResponders = makeLocator(masterResponders, self)
        masterEvents = app.masterEvents if isinstance(app, ClusterApp) else None
        self._events = appMasterEvents(self.masterResponders, masterEvents, self)
        self.workers: dict[int, FakeWorker] = {}
        self.draining: dict[int, FakeWorker] = {}
        #: Why each draining worker drains.
        self._drainCauses: dict[int, str] = {}
        self._dying: list[iosim.IOPump] = []
        for workerId in range(1, workers + 1):
            self.workers[workerId] = self._startWorker(workerId)

    def _startWorker(self, workerId: int) -> FakeWorker:
        masterEnd = ControlAMP(
            AppResponders(RelayLocator(self._calls), self.masterResponders)
        )
        workerEnd = ControlAMP()
        context = WorkerContext(workerId, workerEnd, self.clock)
        _, responders = buildWorkerApp(self._app, "app", context)
        workerEnd.appLocator = AppResponders(responders)
        hooks = AppHooks(workerId, buildWorkerHooks(self._app, "app", context))
        self._events.notify("workerStarted", WorkerEvent(workerId=workerId, pid=None))
        started = hooks.started()
        started.addCallback(
            lambda _: self._events.notify(
                "workerReady", WorkerEvent(workerId=workerId, pid=None)
            )
        )
        pump = iosim.connect(
            masterEnd,
            iosim.makeFakeServer(masterEnd),
            workerEnd,
            iosim.makeFakeClient(workerEnd),
            greet=False,
            clock=self.clock,
        )
        return FakeWorker(workerId, context, context.app, responders, hooks, started, pump)

    def _connections(self) -> dict[int, amp.AMP]:
        return {i: w._pump.server for i, w in self.workers.items()}

    def _drainingConnections(self) -> dict[int, amp.AMP]:
        return {i: w._pump.server for i, w in self.draining.items()}

    def _masterContext(self) -> IMasterContext:
        return self._calls

    # Driving

    def flush(self) -> None:
        """
        Deliver every box in flight, and the answers they cause, until all
        connections are quiet.
        """
        live = [*self.workers.values(), *self.draining.values()]
        pumps = [w._pump for w in live] + self._dying
        self._dying = []
        while any([pump.pump() for pump in pumps]):
            pass

    def result(self, d: Deferred[Any]) -> Any:
        """
        L{flush}, then give the result of C{d}, or raise its exception.

        @raise AssertionError: when C{d} has no result yet (advance
            L{clock} to time a call out).
        """
        self.flush()
        results: list[Any] = []
        d.addBoth(results.append)
        if not results:
            raise AssertionError(f"{d!r} has no result yet")
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def drain(
        self, workerId: int, within: float = 30.0, cause: str = "rollout"
    ) -> Deferred[None]:
        """
        Make ready worker C{workerId} drain, as the master does in a
        roll-out or a removal: it leaves L{workers} for L{draining} (it
        still receives C{broadcast} and C{callWorker}), the app's master
        events hear C{workerDraining} with C{cause}, and its app's
        C{workerDraining} hooks are called with the deadline
        C{clock.seconds() + within}.

        @param cause: the L{twisted_cluster.WorkerEvent} cause: C{"rollout"},
            C{"recycle"}, C{"removed"}, C{"stopped"}, C{"hang"}.
        @return: fires when the app's drain finished (at once for an app
            that declares none); L{kill} the worker then, as its exit.
        """
        worker = self.draining[workerId] = self.workers.pop(workerId)
        self._drainCauses[workerId] = cause
        self._events.notify(
            "workerDraining", WorkerEvent(workerId=workerId, pid=None, cause=cause)
        )
        drained = worker.hooks.draining(self.clock.seconds() + within)
        return drained if drained is not None else succeed(None)

    def stop(self, within: float = 30.0) -> Deferred[None]:
        """
        Stop the cluster as SIGTERM does: the app's master events hear
        C{clusterStopping}, then every ready worker drains (L{drain}, cause
        C{"stopped"}).

        @return: fires when every app's drain finished; L{kill} the
            workers then, as their exits.
        """
        self._events.clusterStopping()
        drains = [self.drain(i, within, "stopped") for i in sorted(self.workers)]
        return gatherResults(drains).addCallback(lambda _: None)

    def kill(self, workerId: int) -> None:
        """
        Make worker C{workerId} (ready or draining) die: its control
        connection closes (calls to it in flight fail with
        L{twisted_cluster.WorkerGone}, and so do the calls it makes, as in
        a real cluster) and it leaves the cluster (later calls to it fail
        with L{twisted_cluster.NoSuchWorker}); its app's C{workerStopping}
        hooks are called, and the app's master events hear C{workerExited}
        (cause: why it drained, else C{"crash"}).
        """
        if workerId in self.draining:
            worker = self.draining.pop(workerId)
        else:
            worker = self.workers.pop(workerId)
        worker.hooks.stopping()
        worker._pump.clientIO.loseConnection()
        self._dying.append(worker._pump)
        self.flush()
        cause = self._drainCauses.pop(workerId, "crash")
        self._events.notify(
            "workerExited", WorkerEvent(workerId=workerId, pid=None, cause=cause)
        )


# A real cluster


def _importRoot(name: str) -> str | None:
    """
    The directory that the module of C{name} was imported from, so that
    workers started from another directory import it too.
    """
    top = name.replace(":", ".").split(".")[0]
    module = sys.modules.get(top)
    origin = getattr(module, "__file__", None)
    if origin is None:
        return None
    here = os.path.dirname(os.path.abspath(origin))
    return os.path.dirname(here) if hasattr(module, "__path__") else here


@attr.s(auto_attribs=True)
class RunningCluster(ForwardingMasterContext):
    """
    A cluster started by L{startCluster}.

    @ivar service: its L{ClusterService} (the master, in this process).
    """

    service: ClusterService
    _reactor: IReactorTime

    @property
    def port(self) -> int:
        """
        The TCP port it listens on, on 127.0.0.1.
        """
        port = self.service.listeners[0].portNumber
        assert port is not None
        return port

    @property
    def url(self) -> str:
        """
        C{http://127.0.0.1:PORT/}.
        """
        return f"http://127.0.0.1:{self.port}/"

    def workerPids(self) -> dict[int, int]:
        """
        The pid of each ready worker, by id.
        """
        assert self.service.supervisor is not None
        return {
            p.workerId: p.pid for p in self.service.supervisor.ready() if p.pid is not None
        }

    def __attrs_post_init__(self) -> None:
        #: The master's clock: the reactor (L{IMasterContext.clock}).
        self.clock = self._reactor

    def _masterContext(self) -> IMasterContext:
        return self.service

    async def waitUntil(
        self, predicate: Any, timeout: float, what: str, failFast: bool = True
    ) -> None:
        """
        Poll C{predicate} every 50 ms; raise L{ClusterFailed} after
        C{timeout} seconds or (with C{failFast}) when the cluster gives up.
        """
        deadline = self._reactor.seconds() + timeout
        while not predicate():
            if failFast and self.service.fatalError is not None:
                raise ClusterFailed(self.service.fatalError)
            if self._reactor.seconds() > deadline:
                raise ClusterFailed(f"timed out after {timeout}s waiting for {what}")
            await deferLater(self._reactor, 0.05, lambda: None)

    async def stop(self) -> None:
        """
        Stop the cluster: drain the workers (SIGKILL what outlives the grace
        period), and wait until every process is reaped and every channel
        closed, so that trial finds the reactor clean.
        """
        service = self.service
        processes = service.supervisor.processes() if service.supervisor else []
        stopping = service.stopService()
        limit = service.config.gracePeriod + service.config.killTimeout + 10
        try:
            await self.waitUntil(
                lambda: stopping.called, limit, "the cluster to stop", failFast=False
            )
        finally:
            for process in processes:
                process.stop(KILL)
        await self.waitUntil(
            lambda: all(
                p.state == STOPPED
                and (p.control is None or p.control.transport is None)
                for p in processes
            ),
            10,
            "worker processes and channels to close",
            failFast=False,
        )


def dottedName(app: Any) -> str:
    """
    The dotted name under which worker processes import C{app}: a class or
    a function by its module and qualified name, any other object (a
    L{ClusterApp}, a resource, a factory) by the module attribute that
    holds it.

    @raise AppLoadError: when C{app} is held by no module's top level (a
        worker could not import it).
    """
    module = getattr(app, "__module__", None)
    qualname = getattr(app, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and "<" not in qualname:
        return f"{module}.{qualname}"
    for name, loaded in list(sys.modules.items()):
        if name == "__main__" or loaded is None:
            continue
        for attribute, value in list(vars(loaded).items()):
            if value is app:
                return f"{name}.{attribute}"
    raise AppLoadError(
        f"cannot start workers with {app!r}: they import the app by name, and "
        "no module holds it at its top level; define it in a module, or give "
        "its dotted name"
    )


async def startCluster(
    testCase: Any,
    app: Any = None,
    workers: int = 2,
    timeout: float = 30.0,
    reactor: ProcessReactor | None = None,
    **settings: Any,
) -> RunningCluster:
    """
    Start a cluster that serves C{app} on an ephemeral port of 127.0.0.1;
    return once all its workers are ready.  The test's clean-up stops it.

        async def test_counts(self):
            cluster = await startCluster(self, "myproject.app", workers=2)
            response = await treq.get(cluster.url)

    The master runs in the test's process (on trial's reactor): the app's
    master-side responders are live objects your test can look at.  The
    workers are real processes that import C{app}; its directory is put on
    their C{PYTHONPATH}.

    @param testCase: the running L{twisted.trial.unittest.TestCase}.
    @param app: the dotted name C{--app} would take, or the object it
        names (a L{ClusterApp}, as L{FakeCluster} takes it; it must be held
        by a module's top level, which the workers import); C{None}: the
        built-in page.
    @param workers: how many workers.
    @param timeout: seconds to wait for every worker to be ready.
    @param reactor: the reactor (default: the global one, which trial runs).
    @param settings: other L{ClusterConfig} fields (C{gracePeriod} defaults
        to 5 seconds here).
    @raise ClusterFailed: when the cluster gives up or is not ready in time.
    @raise AppLoadError: when C{app} is a wrong name, not an app, or an
        object no module holds.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        # The platform's default reactor provides all the master needs.
        reactor = cast(ProcessReactor, globalReactor)
    masterResponders = masterEvents = None
    pythonPath: tuple[str, ...] = ()
    if app is not None:
        if not isinstance(app, str):
            app = dottedName(app)
        obj = resolveName(app)
        checkApp(obj, app)
        if isinstance(obj, ClusterApp):
            masterResponders = obj.masterResponders
            masterEvents = obj.masterEvents
        root = _importRoot(app)
        pythonPath = (root,) if root else ()
    settings.setdefault("gracePeriod", 5.0)
    config = ClusterConfig(
        workers=workers,
        app=app,
        listen=("tcp:0:interface=127.0.0.1",),
        pythonPath=pythonPath,
        **settings,
    )
    service = ClusterService(
        reactor, config, appLocator=masterResponders, masterEvents=masterEvents,
        controlPlane=controlPlane(reactor, config.control),
    )
    cluster = RunningCluster(service, reactor)
    testCase.addCleanup(lambda: Deferred.fromCoroutine(cluster.stop()))
    service.startService()
    await cluster.waitUntil(
        lambda: len(service.workerIds()) >= workers, timeout, f"{workers} ready workers"
    )
    return cluster
