"""
Reopen the master's log file (SIGUSR1), for logrotate.

logrotate, by default (C{create}), renames the log file and creates an
empty one at its path; a process that keeps its descriptor goes on writing
to the renamed file.  On SIGUSR1 the master opens the path again and puts
the new file under the very descriptor its log observer writes to
(C{dup2}), so that whichever observer C{twist} or C{twistd} built keeps
working unchanged, and no line is written to both files or to neither.

Workers log through the master (their events travel over a pipe), so their
lines follow without them doing anything; the master still tells each
worker (L{twisted_cluster._contract.commands.ReopenLogs}), and the worker
calls what its app registered with C{IWorkerContext.onReopenLogs}, for the
files the app writes itself.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from twisted.logger import Logger

from twisted_cluster import logevents

log = Logger()


def logFilePath(runnerOptions: Any) -> str | None:
    """
    The log file that C{twist --log-file} or C{twistd --logfile} named, from
    the runner's options (the parent of the C{cluster} sub-command's), or
    C{None} when the log goes to stdout, stderr or syslog.
    """
    if runnerOptions is None:
        return None
    logFile = runnerOptions.get("logFile") if hasattr(runnerOptions, "get") else None
    name = getattr(logFile, "name", None)
    if isinstance(name, str) and name not in ("<stdout>", "<stderr>"):
        return os.path.abspath(name)
    # twistd: a path, "-" for stdout.
    path = runnerOptions.get("logfile") if hasattr(runnerOptions, "get") else None
    if isinstance(path, str) and path and path != "-":
        return os.path.abspath(path)
    return None


def _writable(fd: int) -> bool:
    """
    Whether C{fd} was opened for writing (its flags in C{/proc/self/fdinfo}).
    """
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8) & (os.O_WRONLY | os.O_RDWR) != 0
    except (OSError, ValueError, IndexError):
        pass
    return False


def logDescriptor(path: str) -> int | None:
    """
    The descriptor of this process that has C{path}'s file open for writing
    now (the one the log observer writes to), or C{None}.
    """
    try:
        wanted = os.stat(path)
    except OSError:
        return None
    for name in sorted(os.listdir("/proc/self/fd"), key=int):
        fd = int(name)
        try:
            found = os.fstat(fd)
        except OSError:
            continue
        if (
            stat.S_ISREG(found.st_mode)
            and (found.st_dev, found.st_ino) == (wanted.st_dev, wanted.st_ino)
            and _writable(fd)
        ):
            return fd
    return None


class LogReopener:
    """
    Reopens one log file under the descriptor its observer writes to.

    @ivar path: the log file's path.
    """

    def __init__(self, path: str, fd: int) -> None:
        """
        @param fd: the descriptor that has the file open (L{logDescriptor}).
        """
        self.path = path
        self._fd = fd

    def reopen(self) -> bool:
        """
        Open L{path} again (created, mode 0644 by the umask, if logrotate
        did not create it) and put it under the observer's descriptor.  A
        path that cannot be opened leaves the log where it was, logged.

        @return: whether the log now goes to the file at L{path}.
        """
        try:
            fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        except OSError as e:
            log.error(
                "cannot reopen log file {path}: {error}; logging on to the old file",
                cluster_event=logevents.LOG_REOPEN_FAILED,
                path=self.path, error=e.strerror,
            )
            return False
        try:
            os.dup2(fd, self._fd, inheritable=False)
        finally:
            os.close(fd)
        log.info("reopened log file {path}",
                 cluster_event=logevents.LOG_REOPENED, path=self.path)
        return True
