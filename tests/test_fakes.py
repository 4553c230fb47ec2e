"""
The fakes of L{tests.fakes} and the real objects provide the same
interfaces: a unit test against a fake cannot pass where the real code
would not match it.
"""

from __future__ import annotations

import sys

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.fakes import FakeProcess, FakeSupervisor, RecordingHandoffObserver
from twisted_cluster._contract.workerconfig import WorkerConfig
from twisted_cluster._master.config import ClusterConfig
from twisted_cluster._master.service import ClusterService
from twisted_cluster._supervision.interfaces import (
    IWorkerObserver,
    IWorkerOperations,
    IWorkerPool,
)
from twisted_cluster._supervision.process import (
    IHandoffObserver,
    IWorkerProcess,
    WorkerProcess,
)
from twisted_cluster._supervision.supervisor import Supervisor


class InterfaceTests(SynchronousTestCase):
    def test_processes(self) -> None:
        real = WorkerProcess(
            MemoryReactorClock(), 1, WorkerConfig(1, None, (), ()), sys.executable,
            onReady=lambda p: None, handoffObserver=RecordingHandoffObserver(),
            listWorkers=list,
        )
        for process in (real, FakeProcess(1)):
            self.assertTrue(verifyObject(IWorkerProcess, process))

    def test_supervisors(self) -> None:
        real = Supervisor(Clock(), ClusterConfig(), lambda *a: FakeProcess(1), print)
        for supervisor in (real, FakeSupervisor()):
            self.assertTrue(verifyObject(IWorkerPool, supervisor))
            self.assertTrue(verifyObject(IWorkerOperations, supervisor))

    def test_observers(self) -> None:
        service = ClusterService(MemoryReactorClock(), ClusterConfig())
        for observer in (service.dispatcher, RecordingHandoffObserver()):
            self.assertTrue(verifyObject(IHandoffObserver, observer))
        for observer in (service, service.dispatcher):
            self.assertTrue(verifyObject(IWorkerObserver, observer))
