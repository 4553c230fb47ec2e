"""
The control protocol between the master and its workers, as AMP commands.

Every worker holds one AMP connection to the master, over an C{AF_UNIX}
socketpair that the master maps into the worker as file descriptor 3.  This
module is the whole specification of the built-in part of that protocol;
applications add their own commands on the same connection (see
L{twisted_cluster.ClusterApp} and docs/api.md).

Accepted client connections do not travel here: they go over a dedicated
C{SOCK_SEQPACKET} channel (L{twisted_cluster._contract.handoff}) so that a large user
message can never hold up the hand-off of connections.

Worker to master
================
  - L{Ready}: the app is loaded and the worker can serve connections.
  - L{StartupFailed}: the app could not be loaded; the worker exits next.
  - L{ListWorkers}: the cluster as the master sees it (the default page
    shows it).
  - L{Relay}: deliver an application command to another worker and bring
    back its answer (C{WorkerContext.callWorker}).
  - L{FinalMetrics}: the app's metrics as the worker leaves them, sent
    once just before a worker that drained exits.

Master to worker
================
  - L{Ping}: proves that the worker's reactor is not blocked, and carries the
    worker's figures.
  - L{Drain}: stop taking connections, finish what is in flight, exit.
  - L{CollectMetrics}: the app's C{prometheus_client} metrics, now (at
    each scrape of the master's C{/metrics}).
  - L{ReopenLogs}: the master reopened its log file (SIGUSR1); the app may
    reopen its own files.
"""

from typing import Mapping

import attr
from twisted.protocols import amp

from twisted_cluster.arguments import BigBytes
from twisted_cluster.errors import ERROR_CODES, CallTimedOut, NoSuchWorker, WorkerGone


class Ready(amp.Command):
    """
    Worker to master: the application is loaded, the worker serves what it
    is handed from now on.
    """

    arguments = [(b"pid", amp.Integer())]
    response = []


class StartupFailed(amp.Command):
    """
    Worker to master: loading the application failed.  C{error} is the one
    line that explains why, C{details} the full traceback.  The worker exits
    right after the answer.
    """

    arguments = [(b"error", amp.Unicode()), (b"details", amp.Unicode())]
    response = []


class ListWorkers(amp.Command):
    """
    Worker to master: the workers of the cluster, as a JSON document (a list
    of objects with C{id}, C{pid}, C{state}).
    """

    arguments = []
    response = [(b"workers", amp.Unicode())]


class Ping(amp.Command):
    """
    Master to worker: a health check.  An answer within the health timeout
    proves the worker's reactor turns; it carries the worker's figures.
    """

    arguments = []
    response = [
        (b"open", amp.Integer()),
        (b"served", amp.Integer()),
        (b"rss", amp.Integer()),
    ]


@attr.s(frozen=True, auto_attribs=True)
class PingFigures:
    """
    What a worker reports in its answer to L{Ping}.

    @ivar open: its connections open now.
    @ivar served: the connections it has served since it started.
    @ivar rss: its resident memory, in bytes.
    """

    open: int = 0
    served: int = 0
    rss: int = 0

    @classmethod
    def fromAnswer(cls, answer: Mapping[str, int]) -> "PingFigures":
        """
        The figures of a L{Ping} answer.
        """
        return cls(answer["open"], answer["served"], answer["rss"])

    def asAnswer(self) -> dict[str, int]:
        """
        These figures as the answer to L{Ping}.
        """
        return attr.asdict(self)


class Drain(amp.Command):
    """
    Master to worker: take no more connections, close idle ones, finish the
    requests in flight, then exit.  Answered at once; the worker's exit is
    the end of the drain.

    C{within} is the time left, in seconds, before the master kills the
    worker: the app's drain is told that deadline.  It is optional both
    ways: a master of older code sends none (the worker counts its
    C{drainTimeout}), and a worker of older code ignores it (AMP reads only
    the arguments a command declares).
    """

    arguments = [(b"within", amp.Float(optional=True))]
    response = []


class ReopenLogs(amp.Command):
    """
    Master to worker: the master reopened its log file (SIGUSR1, after
    logrotate moved it).  A worker's log lines travel through the master
    and follow by themselves; the worker calls what its app registered
    with C{IWorkerContext.onReopenLogs}, for files the app writes itself.
    Answered once those callables returned.
    """

    arguments = []
    response = []


class Relay(amp.Command):
    """
    Worker to master: call an application command on worker C{worker} and
    answer with its answer.

    C{command} is the inner command's name and C{box} its arguments, encoded
    by the calling worker (the master needs none of the application's
    command classes); the answer's C{box} is the target's answer box.  An
    error of the inner command comes back with its own code, so the caller
    gets the inner command's typed exception.  C{timeout} (seconds) bounds
    the master's wait for the target.
    """

    arguments = [
        (b"worker", amp.Integer()),
        (b"command", amp.String()),
        (b"box", BigBytes()),
        (b"timeout", amp.Float(optional=True)),
    ]
    response = [(b"box", BigBytes())]
    errors = {
        kind: ERROR_CODES[kind] for kind in (NoSuchWorker, WorkerGone, CallTimedOut)
    }


class MetricsUnavailable(Exception):
    """
    The worker could not collect its app's metrics (a collector of the app
    raised); C{str()} says why.
    """


class CollectMetrics(amp.Command):
    """
    Master to worker: the app's metrics now, as a snapshot
    (L{twisted_cluster._contract.metricsnapshot}: the families of the app's
    registry, or none when the app does not use C{prometheus_client}).  A
    large registry exceeds one AMP value, hence L{BigBytes}.
    """

    arguments = []
    response = [(b"snapshot", BigBytes())]
    errors = {MetricsUnavailable: b"METRICS_UNAVAILABLE"}


class FinalMetrics(amp.Command):
    """
    Worker to master: the app's metrics as they are when the worker exits
    after a drain (a roll-out, recycling, a removal, a stop), so that the
    master keeps what it counted since the last scrape.  Sent only by a
    worker whose app uses C{prometheus_client}.
    """

    arguments = [(b"snapshot", BigBytes())]
    response = []
