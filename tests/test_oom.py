"""
Unit tests of the attribution of SIGKILLs the master did not send
(L{twisted_cluster._supervision.oom}): a fake cgroup file and a fake
kernel log, and the real L{Supervisor} over fake processes.
"""

from __future__ import annotations

import os
import signal

from twisted.trial.unittest import SynchronousTestCase

from tests.test_lifecycle import Recording
from tests.test_supervision import Harness
from twisted_cluster import logevents
from twisted_cluster._master.config import ClusterConfig
from twisted_cluster._supervision.oom import (
    OOMVerdict,
    OOMWitness,
    counterPath,
    readCount,
)
from twisted_cluster._supervision.supervisor import Supervisor

V2_EVENTS = "low 0\nhigh 0\nmax 3\noom 1\noom_kill {}\noom_group_kill 0\n"
V1_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill {}\n"


class FakeCgroup:
    """
    A cgroup file whose C{oom_kill} count the test raises.
    """

    def __init__(self, testCase: SynchronousTestCase, template: str = V2_EVENTS) -> None:
        self.path = testCase.mktemp()
        self.template = template
        self.set(0)

    def set(self, count: int) -> None:
        with open(self.path, "w") as f:
            f.write(self.template.format(count))

    def witness(self, kernelLog: list[str] | None = None) -> OOMWitness:
        return OOMWitness(lambda: readCount(self.path), lambda: kernelLog)


class CounterPathTests(SynchronousTestCase):
    def layout(self, *files: str) -> str:
        root = self.mktemp()
        for name in files:
            os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
            open(os.path.join(root, name), "w").close()
        return root

    def test_cgroupV2(self) -> None:
        root = self.layout("system.slice/app.service/memory.events")
        self.assertEqual(
            counterPath("0::/system.slice/app.service\n", root),
            os.path.join(root, "system.slice/app.service/memory.events"),
        )

    def test_cgroupV1MemoryController(self) -> None:
        root = self.layout("memory/docker/abc/memory.oom_control")
        self.assertEqual(
            counterPath("5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n", root),
            os.path.join(root, "memory/docker/abc/memory.oom_control"),
        )

    def test_noCounterFile(self) -> None:
        self.assertIsNone(counterPath("0::/\n", self.layout()))

    def test_bothFormatsAreRead(self) -> None:
        for template in (V2_EVENTS, V1_CONTROL):
            cgroup = FakeCgroup(self, template)
            cgroup.set(7)
            self.assertEqual(readCount(cgroup.path), 7)
        self.assertIsNone(readCount(self.mktemp()))


class WitnessTests(SynchronousTestCase):
    def test_aRisenCountIsAnOOMKill(self) -> None:
        cgroup = FakeCgroup(self)
        witness = cgroup.witness()
        self.assertEqual(witness.verdict(10), (OOMVerdict.NOT, "cgroup"))
        cgroup.set(1)
        self.assertEqual(witness.verdict(11), (OOMVerdict.KILLED, "cgroup"))
        self.assertEqual(witness.verdict(12), (OOMVerdict.NOT, "cgroup"))

    def test_twoKilledAtOnceAreBothExplained(self) -> None:
        cgroup = FakeCgroup(self)
        witness = cgroup.witness()
        cgroup.set(2)
        self.assertEqual(witness.verdict(10)[0], OOMVerdict.KILLED)
        self.assertEqual(witness.verdict(11)[0], OOMVerdict.KILLED)
        self.assertEqual(witness.verdict(12)[0], OOMVerdict.NOT)

    def test_theKernelLogNamesThePid(self) -> None:
        log = ["6,812,93817,-;Out of memory: Killed process 4242 (python3) total-vm:9kB\n"]
        witness = OOMWitness(lambda: None, lambda: log)
        self.assertEqual(witness.verdict(4242), (OOMVerdict.KILLED, "kernel log"))
        self.assertEqual(witness.verdict(424), (OOMVerdict.NOT, "kernel log"))

    def test_noWitnessCannotTell(self) -> None:
        self.assertEqual(OOMWitness(lambda: None).verdict(1), (OOMVerdict.UNKNOWN, None))


class SupervisorTests(SynchronousTestCase):
    def harness(self, witness: OOMWitness | None) -> Harness:
        h = Harness(self)
        h.supervisor = Supervisor(
            h.clock, ClusterConfig(workers=2, startConcurrency=64), h._make,
            h.fatal.append, oom=witness,
        )
        return h

    def test_anOOMKillIsSaidAndCountedAsItsOwnCause(self) -> None:
        cgroup = FakeCgroup(self)
        h = self.harness(cgroup.witness())
        w1, w2 = h.startAll()
        cgroup.set(1)
        w1.exit(signal=signal.SIGKILL)
        [event] = h.logged(logevents.WORKER_OUT_OF_MEMORY)
        self.assertEqual(
            (event["worker_id"], event["worker_pid"], event["verdict"], event["source"]),
            (1, w1.pid, "oom", "cgroup"),
        )
        [exited] = h.restarts()
        self.assertEqual(exited["cause"], "oom")
        self.assertIn("out of memory", exited["how"])
        self.assertEqual((h.supervisor.restarts["oom"], h.supervisor.restarts["crash"]), (1, 0))

    def test_observersHearTheOOMCause(self) -> None:
        """
        The app's master events (the supervisor's observers) hear an OOM
        kill as C{oom}, not as a crash: the cause is known only once the
        exit is handled.
        """
        cgroup = FakeCgroup(self)
        h = self.harness(cgroup.witness())
        recording = Recording()
        h.supervisor.addObserver(recording)
        w1, w2 = h.startAll()
        cgroup.set(1)
        w1.exit(signal=signal.SIGKILL)
        self.assertIn(("exited", w1.pid, "oom"), recording.heard)

    def test_aSigkillNobodyExplainsIsPossiblyOutOfMemory(self) -> None:
        h = self.harness(None)
        w1, w2 = h.startAll()
        w1.exit(signal=signal.SIGKILL)
        [event] = h.logged(logevents.WORKER_OUT_OF_MEMORY)
        self.assertEqual(event["verdict"], "unknown")
        [exited] = h.restarts()
        self.assertEqual(exited["cause"], "crash")
        self.assertIn("possibly out of memory", exited["how"])

    def test_aSigkillTheCounterExcludesIsAPlainCrash(self) -> None:
        h = self.harness(FakeCgroup(self).witness())
        w1, w2 = h.startAll()
        w1.exit(signal=signal.SIGKILL)
        self.assertEqual(h.logged(logevents.WORKER_OUT_OF_MEMORY), [])
        self.assertEqual(h.restarts()[0]["cause"], "crash")

    def test_theMastersOwnKillIsNotAttributed(self) -> None:
        cgroup = FakeCgroup(self)
        h = self.harness(cgroup.witness())
        w1, w2 = h.startAll()
        h.supervisor.kill(1)
        cgroup.set(1)
        w1.exit(signal=signal.SIGKILL)
        self.assertEqual(h.logged(logevents.WORKER_OUT_OF_MEMORY), [])
        self.assertEqual(h.restarts()[0]["cause"], "kill")
