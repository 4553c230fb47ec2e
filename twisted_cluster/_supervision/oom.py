"""
Whether a worker that died of a SIGKILL the master did not send was killed
by the kernel's OOM killer.

Two witnesses, read only then: the OOM-kill count of the master's memory
cgroup (C{oom_kill} in C{memory.events} under cgroup v2, in
C{memory.oom_control} under v1; workers live in their master's cgroup),
and, where this user may read it, the kernel's log (C{/dev/kmsg}), which
names the pid it killed.  A count that rose since the last kill it
explained, or a kernel record naming the pid, says yes; readable
witnesses that say neither say no; with neither readable the master can
only say "possibly out of memory", as gunicorn does.

L{OOMWitness} takes what it reads as arguments, so that tests give it a
fake cgroup file and a fake kernel log.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Callable, Iterable

from constantly import ValueConstant, Values

#: Where cgroup file systems are mounted.
CGROUP_ROOT = "/sys/fs/cgroup"

#: The kernel's record of an OOM kill, global or in a memory cgroup
#: ("Out of memory: Killed process 4242 (python) total-vm:...").
_KILLED = re.compile(r"Killed process (\d+) ")

#: Most records read from the kernel's log at once (its ring buffer holds
#: a few thousand).
KMSG_RECORDS = 20000


class OOMVerdict(Values):
    """
    What the witnesses say of one SIGKILL; each value is the C{verdict}
    field of the log event.
    """

    KILLED = ValueConstant("oom")
    NOT = ValueConstant("not_oom")
    UNKNOWN = ValueConstant("unknown")


def counterPath(procCgroup: str, root: str = CGROUP_ROOT) -> str | None:
    """
    The file holding the OOM-kill count of the memory cgroup described by
    C{procCgroup} (the text of C{/proc/self/cgroup}), if it exists.
    """
    candidates = []
    for line in procCgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            candidates.append(os.path.join(root, "memory", path.lstrip("/"), "memory.oom_control"))
        elif number == "0" and not controllers:
            candidates.append(os.path.join(root, path.lstrip("/"), "memory.events"))
            candidates.append(os.path.join(root, "unified", path.lstrip("/"), "memory.events"))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    return None


def readCount(path: str | None) -> int | None:
    """
    The C{oom_kill} count in the cgroup file C{path}, or C{None} when it
    cannot be read.
    """
    if path is None:
        return None
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


def readKernelLog(path: str = "/dev/kmsg") -> list[str] | None:
    """
    The records of the kernel's log, or C{None} when this user may not
    read it (C{kernel.dmesg_restrict}).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    records = []
    try:
        for _ in range(KMSG_RECORDS):
            try:
                record = os.read(fd, 8192)
            except OSError as e:
                if e.errno == errno.EPIPE:
                    continue  # overwritten while read: the next one
                break  # EAGAIN: the end
            if not record:
                break
            records.append(record.decode("utf-8", "replace"))
    finally:
        os.close(fd)
    return records


class OOMWitness:
    """
    Attributes SIGKILLs the master did not send.
    """

    def __init__(
        self,
        count: Callable[[], int | None],
        kernelLog: Callable[[], Iterable[str] | None] = lambda: None,
    ) -> None:
        """
        @param count: reads the cgroup's OOM-kill count (C{None}: cannot).
        @param kernelLog: reads the kernel's log records (C{None}: cannot).
        """
        self._count = count
        self._kernelLog = kernelLog
        #: The count once every OOM kill so far was attributed.
        self._explained = count()

    @classmethod
    def ofThisProcess(cls) -> "OOMWitness":
        """
        The witness of this process's memory cgroup and of the kernel's log.
        """
        try:
            with open("/proc/self/cgroup") as f:
                path = counterPath(f.read())
        except OSError:
            path = None
        return cls(lambda: readCount(path), readKernelLog)

    def verdict(self, pid: int | None) -> tuple[OOMVerdict, str | None]:
        """
        Whether process C{pid}, just reaped after a SIGKILL the master did
        not send, was killed by the OOM killer, and which witness says so.

        @return: the verdict and its source (C{"cgroup"}, C{"kernel log"},
            or C{None}).
        """
        count = self._count()
        if count is not None:
            explained = self._explained if self._explained is not None else count
            self._explained = count
            if count > explained:
                # One more left to explain, if several were killed at once.
                self._explained = explained + 1
                return OOMVerdict.KILLED, "cgroup"
        records = self._kernelLog()
        if records is not None:
            for record in records:
                found = _KILLED.search(record)
                if found is not None and int(found.group(1)) == pid:
                    return OOMVerdict.KILLED, "kernel log"
        if count is None and records is None:
            return OOMVerdict.UNKNOWN, None
        return OOMVerdict.NOT, "cgroup" if count is not None else "kernel log"
