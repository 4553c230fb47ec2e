"""
The master's PID file (C{--pidfile}): written when the cluster starts,
removed when it stops.

C{twist} has no PID file and C{twistd}'s is written before the cluster
binds; this one works under both, refuses to start a second master on the
same file while the first one lives, and takes over a file left behind by
a master that was killed.
"""

from __future__ import annotations

import errno
import os


class PIDFileError(Exception):
    """
    The PID file names a live process, or cannot be written.  C{str(error)}
    is one line.
    """


def pidAlive(pid: int) -> bool:
    """
    Whether process C{pid} exists (one of another user counts), so that a
    file a killed process left behind is taken over rather than obeyed.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PIDFile:
    """
    A PID file at C{path} that holds one process's pid while it runs.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._pid: int | None = None

    def read(self) -> int | None:
        """
        The pid in the file, or C{None} if there is no file or no number in it.
        """
        try:
            with open(self.path) as f:
                return int(f.read().strip() or "x")
        except (FileNotFoundError, ValueError):
            return None

    def acquire(self, pid: int | None = None) -> None:
        """
        Write C{pid} (default: this process's) to the file, atomically, unless
        another live process holds it.  A file whose process is gone is
        replaced.  Acquiring a file this process already holds does nothing.

        @raise PIDFileError: when another live process holds the file, or it
            cannot be written.
        """
        pid = os.getpid() if pid is None else pid
        if self._pid == pid:
            return
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self.read()
                if holder is not None and holder != pid and pidAlive(holder):
                    raise PIDFileError(
                        f"{self.path} says pid {holder} is running: is another "
                        "cluster using this PID file?"
                    ) from None
                self._remove()
                continue
            except OSError as e:
                raise PIDFileError(f"cannot write {self.path}: {e.strerror}") from e
            with os.fdopen(fd, "w") as f:
                f.write(f"{pid}\n")
            self._pid = pid
            return
        raise PIDFileError(f"cannot write {self.path}: another process keeps creating it")

    def release(self) -> None:
        """
        Remove the file if it still holds the pid this object wrote.  Safe to
        call more than once, and when nothing was acquired.
        """
        if self._pid is not None and self.read() == self._pid:
            self._remove()
        self._pid = None

    def _remove(self) -> None:
        try:
            os.unlink(self.path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise PIDFileError(f"cannot remove {self.path}: {e.strerror}") from e
