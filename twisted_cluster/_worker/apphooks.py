"""
Calling the app's L{twisted_cluster.IWorkerHooks} from the worker runtime.

Each hook may return nothing, a L{Deferred} or a coroutine; L{AppHooks}
turns every answer into one Deferred, and keeps the app's mistakes on the
app's side: a hook that raises or fails is logged (C{cluster_event}
L{logevents.HOOK_FAILED}, with the worker's id and the hook's name) and the
worker goes on, except in C{workerStarted}, whose failure is a failed
start-up.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_cluster import logevents
from twisted_cluster.lifecycle import callHook, declaresDrain

log = Logger()


class AppHooks:
    """
    The hooks of one worker's app, called in order.

    @ivar hooks: the L{twisted_cluster.IWorkerHooks} providers.
    """

    def __init__(self, workerId: int, hooks: Sequence[Any]) -> None:
        self._workerId = workerId
        self.hooks = list(hooks)

    def started(self) -> Deferred[Any]:
        """
        Call every C{workerStarted}; fire once all did, or fail with the
        first failure (the worker's start-up failed).
        """
        calls = [callHook(hook.workerStarted) for hook in self.hooks]
        d = DeferredList(calls, fireOnOneErrback=True, consumeErrors=True)
        return d.addErrback(lambda failure: failure.value.subFailure)

    def draining(self, deadline: float) -> Deferred[None] | None:
        """
        Call the C{workerDraining} of the hooks that declare one.

        @return: a Deferred that fires once each has finished (failures are
            logged), or C{None} when none declares a drain: the worker
            drains the app its own way then.
        """
        declared = [hook for hook in self.hooks if declaresDrain(hook)]
        if not declared:
            return None
        calls = [
            callHook(hook.workerDraining, deadline).addErrback(self._failed, "workerDraining")
            for hook in declared
        ]
        return DeferredList(calls).addCallback(lambda _: None)

    def stopping(self) -> None:
        """
        Call every C{workerStopping}; failures are logged.
        """
        for hook in self.hooks:
            callHook(hook.workerStopping).addErrback(self._failed, "workerStopping")

    def _failed(self, failure: Failure, hook: str) -> None:
        log.failure(
            "worker {worker_id}: the app's {hook} hook failed",
            failure,
            cluster_event=logevents.HOOK_FAILED,
            worker_id=self._workerId,
            hook=hook,
        )
