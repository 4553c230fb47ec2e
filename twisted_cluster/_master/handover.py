"""
What passes between an old master and the new one it starts at an upgrade
(SIGUSR2; L{twisted_cluster._master.upgrade} is the old master's half,
L{twisted_cluster._master.succession} the new one's).

The new master inherits these descriptors:
  - L{STATUS_FD}: a pipe on which it reports, one line: C{ready} once all
    its workers are ready, C{failed REASON} when it gives up;
  - L{PREDECESSOR_FD}: a pipe from the old master, which reaches its end
    when the old master is gone;
  - from L{FIRST_SOCKET_FD} on: the listening sockets, then the control
    socket.
The environment variable L{ENVIRONMENT} describes them (L{Handover}).
"""

from __future__ import annotations

import json
from typing import MutableMapping

import attr

from twisted_cluster._master.inheritance import inheritanceMismatch

#: The environment variable that describes what a new master inherits.
ENVIRONMENT = "TWISTED_CLUSTER_UPGRADE"

#: The new master's descriptor for its report to the old one.
STATUS_FD = 3

#: The new master's descriptor that reaches its end when the old one exits.
PREDECESSOR_FD = 4

#: The new master's first inherited socket.
FIRST_SOCKET_FD = 5

#: What the new master writes once all its workers are ready.
READY = b"ready"

#: What precedes the reason when it gives up.
FAILED = b"failed"

#: The longest report the old master reads.
MAX_REPORT = 4096

class HandoverError(Exception):
    """
    The upgrade description in the environment is malformed.
    """


@attr.s(frozen=True, auto_attribs=True)
class Handover:
    """
    What a new master inherits, as its own descriptor numbers.

    @ivar parent: the old master's pid.
    @ivar listeners: (endpoint string, descriptor) of each listening socket.
    @ivar control: the control socket's descriptor, or C{None}.
    @ivar workerPolicy: the scheduling policy the old master's workers set
        back (L{twisted_cluster._shared.scheduling}): the new master inherits
        the old one's C{SCHED_BATCH} and could not tell it from a C{chrt}.
    """

    parent: int
    listeners: tuple[tuple[str, int], ...] = ()
    control: int | None = None
    workerPolicy: int | None = None

    def toJSON(self) -> str:
        """
        This description as the value of L{ENVIRONMENT}.
        """
        return json.dumps(
            {"parent": self.parent, "listeners": [list(l) for l in self.listeners],
             "control": self.control, "worker_policy": self.workerPolicy}
        )

    @classmethod
    def fromJSON(cls, text: str) -> "Handover":
        """
        Parse a value of L{ENVIRONMENT}.

        @raise HandoverError: when it is not one.
        """
        try:
            document = json.loads(text)
            parent = document["parent"]
            listeners = tuple((str(d), int(fd)) for d, fd in document["listeners"])
            control = document["control"]
            policy = document.get("worker_policy")
            if not isinstance(parent, int) or not all(
                value is None or isinstance(value, int) for value in (control, policy)
            ):
                raise TypeError("parent, control and worker_policy must be integers")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise HandoverError(f"malformed {ENVIRONMENT}: {e}") from None
        return cls(parent, listeners, control, policy)

    def inherited(self) -> dict[str, list[int]]:
        """
        Endpoint string -> its descriptors, in order (two listeners may
        share an endpoint string).
        """
        found: dict[str, list[int]] = {}
        for description, fd in self.listeners:
            found.setdefault(description, []).append(fd)
        return found


def takeHandover(
    environ: MutableMapping[str, str],
    parent: int,
    statusFD: int = STATUS_FD,
    predecessorFD: int = PREDECESSOR_FD,
) -> Handover | None:
    """
    The upgrade this process was started for, removed from C{environ} so
    that no process it starts inherits it; C{None} when there is none.

    What this process really holds decides, not the old master's pid: the
    hand-over is taken when its two pipes and its listening sockets are
    here, on the described endpoints (L{inheritanceMismatch}), whether the
    old master still runs, has exited (C{USR2} then C{TERM}, this one is
    then a child of init) or is a zombie nobody reaps.  When they are not
    here, a variable that names another process than this one's parent is
    one this process happened to inherit: ignored.

    @param parent: this process's parent pid.
    @param statusFD: the descriptor of the report pipe (L{STATUS_FD}).
    @param predecessorFD: the descriptor of the old master's pipe
        (L{PREDECESSOR_FD}).
    @raise HandoverError: when the description is malformed, or names this
        process's parent but its descriptors are not what it describes.
    """
    text = environ.pop(ENVIRONMENT, None)
    if text is None:
        return None
    handover = Handover.fromJSON(text)
    mismatch = inheritanceMismatch(
        (statusFD, predecessorFD), handover.listeners, handover.control
    )
    if mismatch is None:
        return handover
    if handover.parent != parent:
        return None
    raise HandoverError(
        f"the upgrade from pid {handover.parent} did not hand over what it "
        f"describes: {mismatch}"
    )


def parseReport(line: bytes) -> tuple[bool, str]:
    """
    A new master's report: (whether it is ready, why it failed).
    """
    word, _, rest = line.strip().partition(b" ")
    if word == READY:
        return True, ""
    if word == FAILED:
        return False, rest.decode("utf-8", "replace")
    return False, "it wrote an unreadable report"
