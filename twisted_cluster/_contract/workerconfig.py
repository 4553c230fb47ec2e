"""
What the master tells a worker on its command line: L{WorkerConfig}.

Part of the contract between the two processes.  A roll-out (SIGHUP) starts
workers from the code installed now under a master started from older
code, so the worker reads what it knows of the configuration and ignores
keys it does not (L{WorkerConfig.fromJSON}); each field has a default, so a
newer master's worker also starts under an older master.  L{VERSION} names
the shape; it is raised when a field changes meaning.
"""

from __future__ import annotations

import json
from typing import Iterable

import attr

#: The shape of the configuration (see the module docstring).
VERSION = 1


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attr.s(frozen=True, auto_attribs=True)
class WorkerConfig:
    """
    What the master tells a worker on its command line.

    @ivar workerId: the worker's id in the cluster (stable across restarts
        of the same slot).
    @ivar app: the C{--app} name, or C{None} for the built-in page.
    @ivar families: the address family of each listener, by index.
    @ivar listeners: the endpoint string of each listener, by index.
    @ivar drainTimeout: how long a drain may take before the worker gives up
        on the connections left (the master's grace period).
    @ivar uid: the user the worker switches to once its listeners' TLS keys
        are loaded and before it loads the app (C{--user}), or C{None}.
    @ivar gid: that user's group.
    @ivar groups: that user's supplementary groups.
    @ivar pythonPath: directories put first on the worker's C{PYTHONPATH}
        (after C{twisted_cluster}'s own), so that it imports the app.
    @ivar schedPolicy: the scheduling policy the worker sets back at start
        (the master's before it yielded to its workers, see
        L{twisted_cluster._shared.scheduling}), or C{None} to keep the inherited one.
    @ivar version: the shape this configuration has (L{VERSION}).
    @ivar ackDelay: seconds the worker may wait to acknowledge adoptions
        (L{twisted_cluster._worker.handoffreceiver.HandoffReceiver}): 0 unless the master
        holds the worker's end of the hand-off channel.
    """

    workerId: int
    app: str | None
    families: tuple[int, ...]
    listeners: tuple[str, ...]
    drainTimeout: float = 30.0
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = attr.ib(default=(), converter=tuple)
    pythonPath: tuple[str, ...] = attr.ib(default=(), converter=_strings)
    ackDelay: float = 0.0
    schedPolicy: int | None = None

    version: int = VERSION

    def toJSON(self) -> str:
        return json.dumps(attr.asdict(self))

    @classmethod
    def fromJSON(cls, text: str) -> "WorkerConfig":
        """
        Read a configuration, keeping the fields this code knows: a newer
        master may send more.
        """
        data = json.loads(text)
        known = {field.name for field in attr.fields(cls)}
        data = {key: value for key, value in data.items() if key in known}
        data["families"] = tuple(data["families"])
        data["listeners"] = tuple(data["listeners"])
        return cls(**data)
