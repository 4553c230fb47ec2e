"""
The life cycle as an application sees it: the hooks a worker calls on the
app, and the events the master tells the app's master-side code.

In a worker (L{IWorkerHooks}): C{workerStarted} before the worker says it
is ready (the app may delay its readiness: open a pool, warm a cache),
C{workerDraining(deadline)} when the worker leaves the cluster (say goodbye
to clients, hand off state, close), C{workerStopping} on its way out.

In the master (L{IMasterEvents}): each worker started, ready, draining and
exited (with its L{WorkerEvent.cause} and its exit code or signal), the
cluster ready, the cluster stopping.

This module is imported by both processes and imports nothing of either:
it holds the interfaces, their values and L{callHook}.  See docs/api.md,
"The life cycle".
"""

from __future__ import annotations

import inspect
from typing import Any, Coroutine, Union

import attr
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from zope.interface import Interface, implementer

#: What a hook may return: nothing (done at once), a L{Deferred} or a
#: coroutine (C{async def}; done when it fires or returns).
HookResult = Union[None, Deferred[Any], Coroutine[Any, Any, Any]]


def callHook(method: Any, *args: Any) -> Deferred[Any]:
    """
    Call one hook; a Deferred of its outcome, whatever it returned
    (L{HookResult}) or raised.
    """
    try:
        result = method(*args)
    except Exception:
        return fail()
    if isinstance(result, Deferred):
        return result
    if inspect.iscoroutine(result):
        return ensureDeferred(result)
    return succeed(result)


class IWorkerHooks(Interface):
    """
    What an app may be told of its worker's life.  The built app (the
    protocol factory or resource C{--app} makes) may provide it, and so may
    C{ClusterApp.workerHooks}.  Subclass L{WorkerHooks} to provide only
    some of the methods.
    """

    def workerStarted() -> HookResult:
        """
        The app is loaded and its responders installed; the worker says
        C{Ready} (and gets its first connection) once what this returns has
        fired.  A failure is a failed start-up (C{--app} errors are shown
        the same way); a wait longer than C{--start-timeout} gets the
        worker killed and counted as a failed start-up.
        """

    def workerDraining(deadline: float) -> HookResult:
        """
        The worker takes no more connections and will be killed at
        C{deadline} (reactor time, C{context.clock.seconds()}).  When what
        this returns has fired, the worker closes the connections still
        open and exits at once, instead of waiting for them.
        """

    def workerStopping() -> None:
        """
        The worker is about to exit (after a drain, or when its master is
        gone): the last moment to flush a buffer.  The app's factory's
        C{stopFactory} is called right after.
        """


@implementer(IWorkerHooks)
class WorkerHooks:
    """
    An L{IWorkerHooks} that does nothing: subclass it and override what
    your app needs.  An app that declares no C{workerDraining} gets the
    default drain (see docs/api.md).
    """

    def workerStarted(self) -> HookResult:
        return None

    def workerDraining(self, deadline: float) -> HookResult:
        return None

    def workerStopping(self) -> None:
        return None


def declaresDrain(hooks: Any) -> bool:
    """
    Whether C{hooks} drains the app itself: it overrides
    L{WorkerHooks.workerDraining}, or provides L{IWorkerHooks} some other
    way.
    """
    method = getattr(type(hooks), "workerDraining", None)
    return method is not None and method is not WorkerHooks.workerDraining


@attr.s(frozen=True, auto_attribs=True, kw_only=True)
class WorkerEvent:
    """
    What happened to one worker process, as the master tells it.

    @ivar workerId: the worker's slot id (a replacement has its
        predecessor's).
    @ivar pid: the process's pid (C{None} when it could not be spawned).
    @ivar cause: why it drains or exited, for L{IMasterEvents.workerDraining}
        and L{IMasterEvents.workerExited}: one of the values C{"crash"},
        C{"hang"}, C{"recycle"}, C{"rollout"}, C{"removed"}, C{"startup"},
        C{"stopped"}; C{None} otherwise.
    @ivar exitCode: the exit status, for an exit that was not a signal.
    @ivar signal: the signal's name (C{"KILL"}, C{"TERM"}) for an exit by
        signal.
    """

    workerId: int
    pid: int | None
    cause: str | None = None
    exitCode: int | None = None
    signal: str | None = None


class IMasterEvents(Interface):
    """
    What the master tells the app of its workers and of the cluster.  Give
    it as C{ClusterApp.masterEvents} (or let C{ClusterApp.masterResponders}
    provide it).  Hooks run in the master's reactor thread; one that raises
    or fails is logged (C{cluster_event} C{"hook_failed"}, with the worker
    id) and never stops supervision.  Subclass L{MasterEvents} to provide
    only some of the methods.
    """

    def workerStarted(event: WorkerEvent) -> HookResult:
        """
        A worker process was spawned; it is loading the app.
        """

    def workerReady(event: WorkerEvent) -> HookResult:
        """
        A worker said it is ready: it takes connections and receives calls.
        """

    def workerDraining(event: WorkerEvent) -> HookResult:
        """
        A worker takes no more connections and is on its way out
        (C{event.cause} says why); it still receives C{broadcast} and
        C{callWorker} until it exits.
        """

    def workerExited(event: WorkerEvent) -> HookResult:
        """
        A worker process is gone (C{event.cause}, C{exitCode}, C{signal}).
        """

    def clusterReady() -> HookResult:
        """
        The first worker is ready: the cluster accepts connections.  Once.
        """

    def clusterStopping() -> HookResult:
        """
        The cluster stops gracefully (SIGTERM): the workers drain next.
        """


@implementer(IMasterEvents)
class MasterEvents:
    """
    An L{IMasterEvents} that does nothing: subclass it and override what
    your app needs.
    """

    def workerStarted(self, event: WorkerEvent) -> HookResult:
        return None

    def workerReady(self, event: WorkerEvent) -> HookResult:
        return None

    def workerDraining(self, event: WorkerEvent) -> HookResult:
        return None

    def workerExited(self, event: WorkerEvent) -> HookResult:
        return None

    def clusterReady(self) -> HookResult:
        return None

    def clusterStopping(self) -> HookResult:
        return None
