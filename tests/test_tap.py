"""
Unit tests of the C{twist cluster} command line (L{twisted_cluster.tap}).
"""

from __future__ import annotations

import shutil
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from tests.support import ROOT, TWIST, testEnvironment
from twisted_cluster import tap as tapModule
from twisted_cluster._master.config import FDS_PER_WORKER, FDS_RESERVED, WorkerBound
from twisted_cluster._master.listening import DEFAULT_BACKLOG
from twisted_cluster.tap import Options


class NumericOptionTests(SynchronousTestCase):
    def test_notANumberIsRefusedInOneLine(self) -> None:
        """
        C{nan}, which C{float()} accepts, is refused like any other value
        that is not a number, before it reaches a timer or a log line.
        """
        for option in ("--health-interval", "--grace-period", "--start-timeout",
                       "--health-timeout", "--max-memory"):
            e = self.assertRaises(
                SystemExit, Options().parseOptions, [option, "nan"]
            )
            self.assertEqual(
                str(e).split(" >= ")[0],
                f"twist cluster: error: {option} must be a number",
            )
            self.assertTrue(str(e).endswith(", not 'nan'"))

    def test_infinityIsRefused(self) -> None:
        """
        C{inf} and C{-inf} are refused too: no setting means "forever".
        """
        for value in ("inf", "-inf", "Infinity"):
            e = self.assertRaises(
                SystemExit, Options().parseOptions, ["--grace-period", value]
            )
            self.assertEqual(
                str(e),
                f"twist cluster: error: --grace-period must be a number >= 0, "
                f"not {value!r}",
            )

    def test_finiteNumbersAreAccepted(self) -> None:
        options = Options()
        options.parseOptions(["--workers", "1", "--grace-period", "2.5",
                              "--health-interval", "0.5"])
        self.assertEqual((options["grace-period"], options["health-interval"]),
                         (2.5, 0.5))


class BacklogOptionTests(SynchronousTestCase):
    def test_backlogReachesTheConfiguration(self) -> None:
        options = Options()
        options.parseOptions(["--workers", "1", "--backlog", "300"])
        self.assertEqual(options.config().backlog, 300)

    def test_defaultBacklog(self) -> None:
        options = Options()
        options.parseOptions(["--workers", "1"])
        self.assertEqual(options.config().backlog, DEFAULT_BACKLOG)

    def test_backlogBelowOneIsRefusedInOneLine(self) -> None:
        e = self.assertRaises(SystemExit, Options().parseOptions, ["--backlog", "0"])
        self.assertEqual(
            str(e), "twist cluster: error: --backlog must be a whole number >= 1, not '0'"
        )


class HelpTests(SynchronousTestCase):
    def test_listenHelpHasNoIndentationRuns(self) -> None:
        """
        The help of C{--listen}, written as an indented docstring, reads as
        one paragraph: no run of spaces from the source's indentation.
        """
        lines = Options().getUsage().splitlines()
        start = next(i for i, line in enumerate(lines) if "--listen=" in line)
        column = lines[start].index("Where to listen")
        text = [lines[start][column:]]
        for line in lines[start + 1:]:
            if line[:column].strip():
                break
            text.append(line[column:])
        paragraph = " ".join(text)
        self.assertIn("(tcp:8080, tcp6:8080, unix:/path/app.sock,", paragraph)
        self.assertIn("a proxy that sends the PROXY protocol", paragraph)
        for line in text:
            self.assertNotIn("   ", line)


class WorkerBoundTests(SynchronousTestCase):
    """
    L{WorkerBound}: four workers per CPU (at least 16) unless allowed more,
    and never past what the open-file and process limits allow.
    """

    def test_fourPerCPUAtLeastSixteen(self) -> None:
        self.assertEqual(WorkerBound(cpus=2).perCPU, 16)
        self.assertEqual(WorkerBound(cpus=8).perCPU, 32)
        self.assertIsNone(WorkerBound(cpus=2).refusal("--workers", 16))
        refusal = WorkerBound(cpus=2).refusal("--workers", 17)
        self.assertEqual(
            refusal,
            "--workers 17 is more than 16 (4 per CPU, at least 16, on 2 CPUs); "
            "pass --allow-many-workers to run more",
        )
        self.assertIsNone(WorkerBound(cpus=2).refusal("--workers", 17, allowMany=True))

    def test_openFileLimitBoundsEvenWhenAllowedMany(self) -> None:
        bound = WorkerBound(cpus=64, nofile=FDS_RESERVED + 10 * FDS_PER_WORKER)
        self.assertEqual(bound.resources, 10)
        self.assertIsNone(bound.refusal("--workers", 10, allowMany=True))
        refusal = bound.refusal("--max-workers", 11, allowMany=True)
        assert refusal is not None
        self.assertTrue(refusal.startswith("--max-workers 11 is more than the 10 workers"))
        self.assertIn("ulimit -n", refusal)

    def test_processLimitLeavesHalfToOtherProcesses(self) -> None:
        bound = WorkerBound(cpus=64, nofile=None, nproc=40)
        self.assertEqual(bound.resources, 20)
        self.assertIsNotNone(bound.refusal("--workers", 21, allowMany=True))

    def test_noLimitsNoResourceBound(self) -> None:
        self.assertIsNone(WorkerBound(cpus=1).resources)


class WorkerCountOptionTests(SynchronousTestCase):
    bound = WorkerBound.current()

    def refused(self, *argv: str) -> str:
        return str(self.assertRaises(SystemExit, Options().parseOptions, list(argv)))

    def test_tooManyWorkersIsRefusedInOneLine(self) -> None:
        """
        Before, C{--workers 100000} was accepted and C{--max-workers} rose
        to match.
        """
        message = self.refused("--workers", "100000")
        self.assertTrue(
            message.startswith("twist cluster: error: --workers 100000 is more than "),
            message,
        )
        self.assertEqual(len(message.splitlines()), 1)

    def test_tooHighMaxWorkersIsRefused(self) -> None:
        message = self.refused("--workers", "1", "--max-workers", "100000")
        self.assertIn("--max-workers 100000 is more than", message)

    def test_theBoundItselfIsAccepted(self) -> None:
        options = Options()
        options.parseOptions(["--workers", str(self.bound.perCPU)])
        self.assertEqual(options.config().maxWorkers, self.bound.perCPU)

    def test_allowManyWorkersGoesPastFourPerCPU(self) -> None:
        wanted = self.bound.perCPU + 1
        if self.bound.resources is not None and wanted > self.bound.resources:
            raise self.skipTest("this process's limits allow no more")
        self.assertIn("--allow-many-workers", self.refused("--workers", str(wanted)))
        options = Options()
        options.parseOptions(["--allow-many-workers", "--workers", str(wanted)])
        self.assertEqual((options.config().workers, options.config().maxWorkers),
                         (wanted, wanted))

    def test_allowManyWorkersStopsAtTheLimits(self) -> None:
        if self.bound.resources is None:
            raise self.skipTest("this process has no open-file or process limit")
        message = self.refused(
            "--allow-many-workers", "--workers", str(self.bound.resources + 1)
        )
        self.assertIn("ulimit", message)

    def test_commandLineExitsOneWithOneLineAndStartsNothing(self) -> None:
        """
        The real command: exit 1, one line on stderr, no traceback, and no
        worker started (nothing is logged on stdout about one).
        """
        result = subprocess.run(
            [*TWIST, "cluster", "--workers", "100000", "--listen", "tcp:0:interface=127.0.0.1"],
            cwd=ROOT, env=testEnvironment(), capture_output=True, timeout=30, text=True,
        )
        self.assertEqual(result.returncode, 1)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("twist cluster: error: --workers 100000 "))
        self.assertNotIn("started", result.stdout)

    def test_openFileLimitOfTheRealProcessBoundsTheWorkers(self) -> None:
        """
        Under C{prlimit --nofile=256}, one worker more than the
        descriptors the master may open allow is refused, even with
        C{--allow-many-workers}, naming C{ulimit -n}.
        """
        prlimit = shutil.which("prlimit")
        if prlimit is None:
            raise self.skipTest("prlimit is not installed")
        bound = (256 - FDS_RESERVED) // FDS_PER_WORKER
        result = subprocess.run(
            [prlimit, "--nofile=256:256", *TWIST, "cluster", "--allow-many-workers",
             "--workers", str(bound + 1), "--listen", "tcp:0:interface=127.0.0.1"],
            cwd=ROOT, env=testEnvironment(), capture_output=True, timeout=30, text=True,
        )
        self.assertEqual(result.returncode, 1)
        [line] = result.stderr.strip().splitlines()
        self.assertTrue(
            line.startswith(
                f"twist cluster: error: --workers {bound + 1} is more than the {bound} workers"
            ),
            line,
        )
        self.assertIn("ulimit -n", line)


class WorkerDefaultsTests(SynchronousTestCase):
    def test_defaultsStayWithinTheBound(self) -> None:
        """
        On a machine whose open-file limit allows 20 workers, the defaults
        (the CPUs, 4 per CPU) come down to 20.
        """
        bound = WorkerBound(cpus=64, nofile=FDS_RESERVED + 20 * FDS_PER_WORKER)
        self.assertEqual(bound.highest, 20)
        self.patch(WorkerBound, "current", classmethod(lambda cls: bound))
        self.patch(tapModule, "defaultWorkers", lambda: 64)
        options = Options()
        options.parseOptions([])
        self.assertEqual((options["workers"], options["max-workers"]), (20, 20))
