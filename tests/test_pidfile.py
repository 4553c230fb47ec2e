"""
Tests for L{twisted_cluster._master.pidfile}: the master's C{--pidfile}.
"""

from __future__ import annotations

import os
import subprocess

from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import ClusterProcess
from twisted_cluster._master.pidfile import PIDFile, PIDFileError, pidAlive


def _deadPid() -> int:
    """
    A pid that no process has: above the kernel's maximum.
    """
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read()) + 1


class PIDFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()

    def test_acquireWritesThisProcesssPid(self) -> None:
        """
        Acquiring writes the pid, one line; acquiring again does nothing.
        """
        pidfile = PIDFile(self.path)
        pidfile.acquire()
        pidfile.acquire()
        with open(self.path) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")

    def test_liveHolderIsNotReplaced(self) -> None:
        """
        A file that names another live process is left alone and the second
        master refuses to start, in one line naming that pid.
        """
        with open(self.path, "w") as f:
            f.write(f"{os.getppid()}\n")
        error = self.assertRaises(PIDFileError, PIDFile(self.path).acquire)
        self.assertIn(f"pid {os.getppid()} is running", str(error))
        self.assertEqual(PIDFile(self.path).read(), os.getppid())

    def test_staleFileIsTakenOver(self) -> None:
        """
        A file left by a master that was killed (its pid is gone, with or
        without the newline), or one naming this very process (a
        container's master is pid 1 on every start), is replaced.
        """
        for content in [f"{_deadPid()}\n", f"{_deadPid()}", f"{os.getpid()}\n"]:
            with open(self.path, "w") as f:
                f.write(content)
            pidfile = PIDFile(self.path)
            pidfile.acquire()
            self.assertEqual(pidfile.read(), os.getpid())
            pidfile.release()
            self.assertFalse(os.path.exists(self.path))

    def test_zombieHolderIsStale(self) -> None:
        """
        A file naming a zombie (a master that exited and whose parent never
        reaped it: C{kill(pid, 0)} still succeeds) is stale, replaced.
        """
        zombie = subprocess.Popen(["true"])
        self.addCleanup(zombie.wait)
        # Wait for it to exit, and leave it unreaped.
        os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)
        os.kill(zombie.pid, 0)
        self.assertFalse(pidAlive(zombie.pid))
        self.assertTrue(pidAlive(os.getpid()))
        with open(self.path, "w") as f:
            f.write(f"{zombie.pid}\n")
        pidfile = PIDFile(self.path)
        pidfile.acquire()
        self.assertEqual(pidfile.read(), os.getpid())
        pidfile.release()

    def test_fileThatIsNotAPidFileIsLeftAlone(self) -> None:
        """
        A file that holds anything but exactly one pid (a typo naming a
        configuration file, an empty file, a pid followed by more) is not
        ours: acquiring refuses in one line naming it and the file keeps
        its content.
        """
        dead = _deadPid()
        for content in [b"important = true\n", b"", b"\n", b"%d\n\n" % dead,
                        b"%d\nsecret\n" % dead, b" %d" % dead, b"0\n", b"-5\n",
                        b"9" * 40, b"%d\n" % 2**31, b"99999999999\n"]:
            with open(self.path, "wb") as f:
                f.write(content)
            error = self.assertRaises(PIDFileError, PIDFile(self.path).acquire)
            self.assertIn(f"{self.path} is not a PID file", str(error))
            self.assertNotIn("\n", str(error))
            with open(self.path, "rb") as f:
                self.assertEqual(f.read(), content)

    def test_directoryIsOneLineError(self) -> None:
        """
        A path naming a directory is refused with a L{PIDFileError} (no
        other exception), and the directory is left as it is.
        """
        os.mkdir(self.path)
        error = self.assertRaises(PIDFileError, PIDFile(self.path).acquire)
        self.assertEqual(
            str(error),
            f"{self.path} is a directory: refusing to replace it; remove it "
            "or give --pidfile another path",
        )
        self.assertEqual(os.listdir(self.path), [])

    def test_symbolicLinkIsNeitherFollowedNorReplaced(self) -> None:
        """
        A symbolic link at the path (to a stale PID file, or dangling) is
        refused: the file it points to is neither written nor removed, and
        the link stays.
        """
        target = self.mktemp()
        with open(target, "w") as f:
            f.write(f"{_deadPid()}\n")
        os.symlink(target, self.path)
        error = self.assertRaises(PIDFileError, PIDFile(self.path).acquire)
        self.assertIn("is a symbolic link", str(error))
        self.assertEqual(os.readlink(self.path), target)
        with open(target) as f:
            self.assertEqual(f.read(), f"{_deadPid()}\n")
        os.unlink(target)
        self.assertRaises(PIDFileError, PIDFile(self.path).acquire)
        self.assertFalse(os.path.exists(target))

    def test_writtenWholeLeavingNothingElse(self) -> None:
        """
        The file appears with its content (written beside it and linked
        into place), mode 0644, and no temporary file is left in the
        directory, also when a stale file was replaced.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "x.pid")
        with open(path, "w") as f:
            f.write(f"{_deadPid()}\n")
        stale = os.stat(path).st_ino
        pidfile = PIDFile(path)
        pidfile.acquire()
        self.assertEqual(os.listdir(directory), ["x.pid"])
        self.assertNotEqual(os.stat(path).st_ino, stale)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o644)

    def test_releaseRemovesOnlyOurOwnFile(self) -> None:
        """
        Releasing removes the file; a file that now names another process
        (a new master took over) is kept.
        """
        pidfile = PIDFile(self.path)
        pidfile.acquire()
        pidfile.release()
        self.assertFalse(os.path.exists(self.path))
        pidfile.release()
        other = PIDFile(self.path)
        other.acquire()
        with open(self.path, "w") as f:
            f.write("1\n")
        other.release()
        self.assertTrue(os.path.exists(self.path))

    def test_releaseKeepsAFileThatIsNoLongerAPidFile(self) -> None:
        """
        A file put in place of ours (not a PID file any more) is left there
        at release, and releasing does not raise.
        """
        pidfile = PIDFile(self.path)
        pidfile.acquire()
        os.unlink(self.path)
        with open(self.path, "w") as f:
            f.write(f"{os.getpid()} was here\n")
        pidfile.release()
        with open(self.path) as f:
            self.assertEqual(f.read(), f"{os.getpid()} was here\n")

    def test_unwritableDirectoryIsOneLineError(self) -> None:
        """
        A path that cannot be created gives a L{PIDFileError} naming it.
        """
        path = os.path.join(self.mktemp(), "missing", "x.pid")
        error = self.assertRaises(PIDFileError, PIDFile(path).acquire)
        self.assertIn(path, str(error))


class CommandLineTests(TestCase):
    """
    C{twist cluster --pidfile} on a path that is not a PID file: a real
    master process.
    """

    timeout = 60

    async def assertRefused(self, path: str) -> None:
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--control", "none", "--pidfile", path, waitReady=0,
        )
        self.assertEqual(await cluster.waitExit(30), 1)
        [line] = cluster.stderr.decode().splitlines()
        self.assertTrue(line.startswith(f"twist cluster: error: {path} is "), line)
        self.assertEqual(cluster.started, set())

    async def test_directoryIsRefusedInOneLine(self) -> None:
        """
        C{--pidfile} naming a directory: one line, exit 1, no worker.
        """
        path = os.path.abspath(self.mktemp())
        os.mkdir(path)
        await self.assertRefused(path)
        self.assertTrue(os.path.isdir(path))

    async def test_fileThatIsNotAPidFileSurvives(self) -> None:
        """
        C{--pidfile} naming a file that is not a PID file (a typo): one
        line, exit 1, and the file is still there with its content.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("[settings]\nimportant = true\n")
        await self.assertRefused(path)
        with open(path) as f:
            self.assertEqual(f.read(), "[settings]\nimportant = true\n")
