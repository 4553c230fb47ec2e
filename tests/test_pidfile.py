"""
Tests for L{twisted_cluster.pidfile}: the master's C{--pidfile}.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster.pidfile import PIDFile, PIDFileError


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
        A file left by a master that was killed (its pid is gone), or a file
        without a pid, is replaced.
        """
        for content in [f"{_deadPid()}\n", "garbage"]:
            with open(self.path, "w") as f:
                f.write(content)
            pidfile = PIDFile(self.path)
            pidfile.acquire()
            self.assertEqual(pidfile.read(), os.getpid())
            pidfile.release()

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

    def test_unwritableDirectoryIsOneLineError(self) -> None:
        """
        A path that cannot be created gives a L{PIDFileError} naming it.
        """
        path = os.path.join(self.mktemp(), "missing", "x.pid")
        error = self.assertRaises(PIDFileError, PIDFile(path).acquire)
        self.assertIn(path, str(error))
