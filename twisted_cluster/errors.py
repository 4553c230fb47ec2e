"""
The errors of the cluster's call API, as typed exceptions.

They cross AMP like any error a command declares: a worker that relays a call
through the master gets the same type the master saw.  Each takes one
message, so that user commands may list them in their own C{errors}.
"""

from __future__ import annotations

from twisted.internet.defer import TimeoutError


class WorkerUnavailable(Exception):
    """
    A call could not reach the worker it was meant for.

    @ivar workerId: the worker the call was for, when known.
    """

    def __init__(self, message: str, workerId: int | None = None) -> None:
        super().__init__(message)
        self.workerId = workerId


class NoSuchWorker(WorkerUnavailable):
    """
    No ready worker has that id when the call is made: the id is outside the
    pool, or its worker is starting, draining or being replaced.
    """


class WorkerGone(WorkerUnavailable):
    """
    The worker exited (or its control channel closed) before it answered;
    for a call a worker makes, the calling worker's own channel closed (it
    is leaving the cluster).
    """


class CallTimedOut(TimeoutError):
    """
    A call got no answer in time; the message names the command and the
    worker (or the master) it was for.  A
    L{twisted.internet.defer.TimeoutError}, so that code catching that one
    catches this too.
    """

    def __init__(self, message: str) -> None:
        # TimeoutError's own str() is its arguments' tuple.
        Exception.__init__(self, message)

    def __str__(self) -> str:
        return str(self.args[0])


class ValueTooLong(Exception):
    """
    One value of a command or of its answer is longer than AMP carries in
    one value (65,535 bytes).  Raised before anything is sent; declare the
    argument L{twisted_cluster.BigBytes} or L{twisted_cluster.BigUnicode} to
    send large values in chunks.
    """


#: Wire codes of the errors above, shared by every cluster call.
ERROR_CODES: dict[type[Exception], bytes] = {
    NoSuchWorker: b"CLUSTER_NO_SUCH_WORKER",
    WorkerGone: b"CLUSTER_WORKER_GONE",
    ValueTooLong: b"CLUSTER_VALUE_TOO_LONG",
    CallTimedOut: b"CLUSTER_TIMEOUT",
}


class ClusterFailed(Exception):
    """
    The cluster gave up (for example: the app cannot be loaded, or workers
    fail to start again and again); the message is its one-line reason.
    L{twisted_cluster.ClusterService.whenReady} fails with it.
    """
