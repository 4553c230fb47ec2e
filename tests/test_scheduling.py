"""
Tests for L{twisted_cluster._shared.scheduling}: the master yields the CPU to its
workers (C{SCHED_BATCH}), the workers set back the master's first policy.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import ClusterProcess
from twisted_cluster._shared.scheduling import restorePolicy, yieldToWorkers

if not hasattr(os, "SCHED_BATCH"):
    skip = "no SCHED_BATCH on this platform"


class FakeScheduler:
    """
    One process's scheduling policy, as C{get}/C{set} functions.
    """

    def __init__(self, policy: int, refuse: bool = False) -> None:
        self.policy = policy
        self.refuse = refuse
        self.changes: list[int] = []

    def get(self) -> int:
        return self.policy

    def set(self, policy: int) -> None:
        if self.refuse:
            raise PermissionError(1, "Operation not permitted")
        self.policy = policy
        self.changes.append(policy)


class YieldToWorkersTests(SynchronousTestCase):
    def test_aNormalMasterBecomesBatchAndTellsTheWorkersNormal(self) -> None:
        scheduler = FakeScheduler(os.SCHED_OTHER)
        self.assertEqual(yieldToWorkers(scheduler.get, scheduler.set), os.SCHED_OTHER)
        self.assertEqual(scheduler.policy, os.SCHED_BATCH)

    def test_aPolicyChosenByWhoeverStartedTheMasterIsKept(self) -> None:
        """
        A master started under C{chrt} (idle, batch, realtime) keeps that
        policy, and so do its workers.
        """
        for policy in (os.SCHED_BATCH, os.SCHED_IDLE, os.SCHED_FIFO):
            scheduler = FakeScheduler(policy)
            self.assertIsNone(yieldToWorkers(scheduler.get, scheduler.set))
            self.assertEqual(scheduler.changes, [])

    def test_refusedChangeChangesNothing(self) -> None:
        scheduler = FakeScheduler(os.SCHED_OTHER, refuse=True)
        self.assertIsNone(yieldToWorkers(scheduler.get, scheduler.set))
        self.assertEqual(scheduler.policy, os.SCHED_OTHER)


class RestorePolicyTests(SynchronousTestCase):
    def test_aWorkerSetsBackTheMastersPolicy(self) -> None:
        scheduler = FakeScheduler(os.SCHED_BATCH)
        restorePolicy(os.SCHED_OTHER, scheduler.get, scheduler.set)
        self.assertEqual(scheduler.policy, os.SCHED_OTHER)

    def test_noPolicyKeepsTheInheritedOne(self) -> None:
        scheduler = FakeScheduler(os.SCHED_BATCH)
        restorePolicy(None, scheduler.get, scheduler.set)
        self.assertEqual(scheduler.changes, [])

    def test_aRefusedChangeKeepsTheInheritedOne(self) -> None:
        scheduler = FakeScheduler(os.SCHED_BATCH, refuse=True)
        restorePolicy(os.SCHED_OTHER, scheduler.get, scheduler.set)
        self.assertEqual(scheduler.policy, os.SCHED_BATCH)


class CommandLineTests(TestCase):
    """
    C{twist cluster}: the master runs as C{SCHED_BATCH}, its workers as
    normal processes, unless C{--master-normal-priority}.
    """

    timeout = 40

    async def test_masterYieldsToItsWorkers(self) -> None:
        cluster = await ClusterProcess.start(self, "--workers", "2", waitReady=2)
        assert cluster.pid is not None
        self.assertEqual(os.sched_getscheduler(cluster.pid), os.SCHED_BATCH)
        for pid in cluster.workers.values():
            self.assertEqual(os.sched_getscheduler(pid), os.SCHED_OTHER)

    async def test_normalPriorityKeepsTheMasterNormal(self) -> None:
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--master-normal-priority", waitReady=1
        )
        assert cluster.pid is not None
        self.assertEqual(os.sched_getscheduler(cluster.pid), os.SCHED_OTHER)
