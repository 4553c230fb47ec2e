"""
Where the master stands in the CPU scheduler's queue: behind its workers.

The master's work per connection is small (an C{accept} and a share of a
C{sendmsg}); the workers' is large.  In the scheduler's normal class, a
master woken by a new connection preempts the worker running on that core
at once, so under load the master wakes once per connection and the worker
it preempted pays for the switch.  As C{SCHED_BATCH} the master never
preempts on wake-up: on a busy core it runs when the worker there yields or
its slice ends, and then accepts every connection that arrived meanwhile
in one batch (see L{twisted_cluster._master.acceptor}); on an idle core it runs at
once, as before.  So the batching turns itself on only while the cores are
saturated, and adds no latency while there is idle capacity.  Measured on 2
cores (docs/performance.md): the master's CPU per connection halves at 32
and 256 concurrent clients, with the same throughput or better at every
concurrency.

Workers inherit the policy across C{fork}; each sets back the one the
master started with (L{WorkerConfig.schedPolicy}), which any process may do
for the non-realtime policies.  Only the C{twist cluster} command line
switches the master (L{twisted_cluster.tap}); a L{ClusterService} run inside
another program (a trial suite) leaves that program's scheduling alone.
"""

from __future__ import annotations

import os
from typing import Callable

_BATCH: int | None = getattr(os, "SCHED_BATCH", None)
_OTHER: int | None = getattr(os, "SCHED_OTHER", None)


def _getPolicy() -> int:
    return os.sched_getscheduler(0)


def _setPolicy(policy: int) -> None:
    os.sched_setscheduler(0, policy, os.sched_param(0))


def yieldToWorkers(
    get: Callable[[], int] = _getPolicy, set: Callable[[int], None] = _setPolicy
) -> int | None:
    """
    Put the calling (master) process in C{SCHED_BATCH} if it runs in the
    normal class.

    @return: the policy the workers should run with (the one the master had),
        or C{None} when nothing changed: not Linux, or the process was
        already given another policy by whoever started it (C{chrt}), which
        is left as it is, for the workers too.
    """
    if _BATCH is None or _OTHER is None:
        return None
    try:
        if get() != _OTHER:
            return None
        set(_BATCH)
    except OSError:
        return None
    return _OTHER


def restorePolicy(
    policy: int | None, get: Callable[[], int] = _getPolicy,
    set: Callable[[int], None] = _setPolicy,
) -> None:
    """
    In a worker: run with C{policy}, the master's policy before it yielded
    (L{yieldToWorkers}); C{None} leaves the inherited one.
    """
    if policy is None:
        return
    try:
        if get() != policy:
            set(policy)
    except OSError:
        # Not permitted (a realtime policy the master had): the inherited
        # one stays.
        pass
