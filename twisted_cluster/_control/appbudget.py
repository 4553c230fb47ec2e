"""
A bound on the app's series in one C{/metrics} render, for the whole
cluster.

Each worker's snapshot is bounded (L{twisted_cluster._contract.metricsnapshot}),
but the master renders every worker's together, in its reactor thread,
while no connection is handed off: 2 workers of 19,000 gauges with long
labels each (within their bounds) made each render take 0.57 s and
stalled the app's requests as long.  L{overBudget} keeps a render within
a cluster-wide L{Budget} of samples and bytes by leaving out the largest
snapshots: a cluster of many small workers keeps them all, and a worker
that publishes too much loses its own series first (stale, counted and
logged by the gatherer), not the others'.
"""

from __future__ import annotations

from typing import Mapping

import attr

from twisted_cluster._control.appseries import Key

#: The most samples of the workers' snapshots one render takes, together.
MAX_CLUSTER_SAMPLES = 10_000

#: The most bytes of the workers' snapshots one render takes, together.
MAX_CLUSTER_BYTES = 2 * 1024 * 1024

@attr.s(frozen=True, auto_attribs=True)
class Budget:
    """
    What one render of the app's series may take, over all workers.

    @ivar samples: the most samples.
    @ivar bytes: the most bytes of snapshots (as the workers sent them:
        about what their series weigh in the exposition).
    """

    samples: int = MAX_CLUSTER_SAMPLES
    bytes: int = MAX_CLUSTER_BYTES


@attr.s(frozen=True, auto_attribs=True)
class Size:
    """
    What one worker's snapshot weighs.
    """

    samples: int
    bytes: int


def overBudget(sizes: Mapping[Key, Size], budget: Budget) -> set[Key]:
    """
    The snapshots left out so that the others fit C{budget}: taken
    smallest first (by samples, then bytes, then key, so that the choice
    is the same from one render to the next), each one that no longer fits
    is left out.
    """
    samples, size = 0, 0
    left: set[Key] = set()
    for key in sorted(sizes, key=lambda k: (sizes[k].samples, sizes[k].bytes, k)):
        weight = sizes[key]
        if samples + weight.samples > budget.samples or size + weight.bytes > budget.bytes:
            left.add(key)
            continue
        samples += weight.samples
        size += weight.bytes
    return left
