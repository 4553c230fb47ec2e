"""
The master's PID file (C{--pidfile}): written when the cluster starts,
removed when it stops.

C{twist} has no PID file and C{twistd}'s is written before the cluster
binds; this one works under both, refuses to start a second master on the
same file while the first one lives, and takes over a file left behind by
a master that was killed.

What counts as a PID file of ours, and the rule for a stale one: a regular
file (not a symbolic link, not a directory) that holds exactly one process
id in decimal, optionally followed by one newline, which is what
L{PIDFile.acquire} writes.  Such a file whose process is gone (or whose pid
is this very process's: a container's master is pid 1 on every start) is
stale: a master killed by SIGKILL or the OOM killer cannot remove its own
file, and refusing to start after every crash would need a person each
time.  A file naming a live process is never taken over, even when that
process might be an unrelated one that reused the pid: nothing proves it
is not a master, and the error names the pid to check.  Anything else (a
typo naming a configuration file, an empty file, a symbolic link) is not
ours: it is left exactly as it is and the master refuses to start.

The file is written whole before it appears: the pid goes to a new file
beside it, which is then hard-linked into place.  C{link} never follows a
symbolic link at the destination and fails if something is already there,
so a file created meanwhile by another master is never overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile

from twisted.logger import Logger

log = Logger()

#: Exactly what a PID file of ours holds.
_PID_CONTENT = re.compile(rb"[1-9][0-9]{0,9}\n?\Z")

#: More than any PID file of ours holds: a longer file is not one.
_MAX_SIZE = 11

#: Above any pid (C{pid_t} is a signed 32-bit number).
_PID_LIMIT = 2**31


class PIDFileError(Exception):
    """
    The PID file names a live process, is not a PID file, or cannot be
    written.  C{str(error)} is one line.
    """


def pidAlive(pid: int) -> bool:
    """
    Whether process C{pid} exists (one of another user counts), so that a
    file a killed process left behind is taken over rather than obeyed.  A
    zombie (state C{Z} in C{/proc/PID/stat}: exited, not yet reaped by a
    parent that may never call C{wait}) counts as gone: C{kill(pid, 0)}
    succeeds on it, but it runs nothing and holds nothing.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """
    Whether C{/proc} says process C{pid} is a zombie (C{False} where it
    cannot tell).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The command name in parentheses may hold anything: the state
            # is the first field after its last parenthesis.
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return bool(fields) and fields[0] == b"Z"


#: Which file a path named when it was read: (device, inode).
_Identity = tuple[int, int]


class PIDFile:
    """
    A PID file at C{path} that holds one process's pid while it runs.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._pid: int | None = None

    def read(self) -> int | None:
        """
        The pid in the file, or C{None} if there is no file or it is not a
        PID file (see the module docstring).
        """
        try:
            found = self._inspect()
        except PIDFileError:
            return None
        return None if found is None else found[1]

    def acquire(self, pid: int | None = None) -> None:
        """
        Write C{pid} (default: this process's) to the file, atomically,
        unless another live process holds it or the file is not a PID file.
        A stale PID file is replaced.  Acquiring a file this object already
        holds does nothing.

        @raise PIDFileError: when another live process holds the file, the
            path names something that is not a PID file, or it cannot be
            written.
        """
        pid = os.getpid() if pid is None else pid
        if self._pid == pid:
            return
        for _ in range(3):
            found = self._inspect()
            if found is not None:
                identity, holder = found
                if holder != pid and pidAlive(holder):
                    raise PIDFileError(
                        f"{self.path} says pid {holder} is running: is another "
                        "cluster using this PID file?"
                    )
            if self._install(pid, None if found is None else found[0]):
                self._pid = pid
                return
        raise PIDFileError(f"cannot write {self.path}: another process keeps creating it")

    def release(self) -> None:
        """
        Remove the file if it still holds the pid this object wrote; leave
        anything else there alone.  Safe to call more than once, and when
        nothing was acquired; a file that cannot be removed is logged, not
        raised, since this runs while the process exits.
        """
        pid, self._pid = self._pid, None
        if pid is None or self.read() != pid:
            return
        try:
            os.unlink(self.path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                log.warn("cannot remove PID file {path}: {error}",
                         path=self.path, error=e.strerror)

    def moveTo(self, path: str) -> bool:
        """
        Rename the file this object holds to C{path}, and go on holding it
        there: a master upgrade (SIGUSR2) moves the old master's file to
        C{PATH.oldbin}, as nginx and gunicorn do, so that the new master
        writes its own at C{PATH}; an upgrade that fails moves it back.
        C{path} is replaced if it holds a PID file whose process is gone
        (a new master that was killed), never otherwise.

        @return: whether the file moved; C{False} (and logged) when this
            object holds none, or C{path} names a live process or
            something that is not a PID file.
        """
        pid = self._pid
        if pid is None or self.read() != pid:
            return False
        target = PIDFile(path)
        try:
            found = target._inspect()
        except PIDFileError as e:
            log.warn("cannot move PID file {path}: {error}", path=self.path, error=str(e))
            return False
        if found is not None and found[1] != pid and pidAlive(found[1]):
            log.warn(
                "cannot move PID file {path} to {target}: it names live pid {holder}",
                path=self.path, target=path, holder=found[1],
            )
            return False
        try:
            os.rename(self.path, path)
        except OSError as e:
            log.warn("cannot move PID file {path} to {target}: {error}",
                     path=self.path, target=path, error=e.strerror)
            return False
        self.path = path
        return True

    def _inspect(self) -> tuple[_Identity, int] | None:
        """
        What the path names now: C{None} for nothing, else which file it is
        and the pid it holds.

        @raise PIDFileError: when the path names something that is not a
            PID file, or cannot be read.
        """
        try:
            # O_NONBLOCK: a FIFO someone put there must not hang the start.
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise self._notOurs("a symbolic link") from None
            raise PIDFileError(f"cannot read {self.path}: {e.strerror}") from None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise self._notOurs("a directory")
            if not stat.S_ISREG(info.st_mode):
                raise self._notOurs("not a regular file")
            content = os.read(fd, _MAX_SIZE + 1)
        except OSError as e:
            raise PIDFileError(f"cannot read {self.path}: {e.strerror}") from None
        finally:
            os.close(fd)
        if not _PID_CONTENT.match(content) or int(content) >= _PID_LIMIT:
            raise self._notOurs("not a PID file (it holds more than a process id)")
        return (info.st_dev, info.st_ino), int(content)

    def _notOurs(self, what: str) -> PIDFileError:
        return PIDFileError(
            f"{self.path} is {what}: refusing to replace it; remove it or "
            "give --pidfile another path"
        )

    def _install(self, pid: int, replacing: _Identity | None) -> bool:
        """
        Put a file holding C{pid} at the path, whole.

        @param replacing: the stale PID file found there, which is removed
            first, or C{None} when there was none.
        @return: whether the file is ours; C{False} when another file
            appeared or changed meanwhile (the caller looks again).
        @raise PIDFileError: when the directory cannot be written.
        """
        directory, name = os.path.split(self.path)
        try:
            fd, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=directory or ".")
        except OSError as e:
            raise PIDFileError(f"cannot write {self.path}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)
                f.write(b"%d\n" % (pid,))
            if replacing is not None:
                found = self._inspect()
                if found is None or found[0] != replacing:
                    return False
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            os.link(temporary, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            raise PIDFileError(f"cannot write {self.path}: {e.strerror}") from None
        finally:
            # The linked copy at the path is the file now; nobody else
            # knows the temporary name, which only goes away.
            with contextlib.suppress(OSError):
                os.unlink(temporary)
