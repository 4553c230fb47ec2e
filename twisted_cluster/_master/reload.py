"""
C{--reload}, for development: roll the workers when the app's code changes.

The master imports the app once to check it (L{twisted_cluster.tap});
the source files of the modules that import brought in, outside the
standard library, the installed packages and twisted-cluster itself, are
the app's.  Their directories are watched with inotify
(C{twisted.internet.inotify}, Linux; no extra library): a C{.py} file
written, or moved into place as editors save, schedules a rolling restart
(L{ClusterService.rollingRestart}) a moment later, so that an editor saving
several files rolls once.  The roll-out is SIGHUP's: each new worker
imports the code afresh and is ready before an old one drains, and code
that does not load aborts it while the old workers keep serving.

L{ReloadPolicy} decides (which paths count, when to roll), on an injected
clock; L{watchDirectories} is the thin inotify part.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sysconfig
from typing import Any, Callable, Iterable, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFDSet, IReactorTime
from twisted.logger import Logger
from twisted.python.filepath import FilePath

import twisted_cluster
from twisted_cluster import logevents
from twisted_cluster._master.service import MasterReactor
from twisted_cluster._shared.workerlog import escapeControls

log = Logger()

#: Seconds after the last change before the workers roll: editors save
#: several files, and some write a file twice.
SETTLE = 0.3

#: How many changed files the log line names; the rest are counted.
NAMED_FILES = 5


def _excludedRoots() -> list[str]:
    """
    Directories whose modules are not the app's: the standard library, the
    installed packages, and twisted-cluster itself.
    """
    roots = {
        sysconfig.get_paths()[name]
        for name in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    roots.add(os.path.dirname(os.path.abspath(twisted_cluster.__file__)))
    return sorted(os.path.realpath(root) + os.sep for root in roots)


def appDirectories(
    modules: Mapping[str, Any], before: Iterable[str], excluded: Iterable[str] | None = None
) -> list[str]:
    """
    The directories of the source files of the modules in C{modules} that
    are not in C{before} (those the app's import brought in), outside
    C{excluded} (default: L{_excludedRoots}).
    """
    already = set(before)
    roots = list(_excludedRoots() if excluded is None else excluded)
    found = set()
    for name, module in list(modules.items()):
        path = getattr(module, "__file__", None)
        if name in already or not isinstance(path, str) or not path.endswith(".py"):
            continue
        real = os.path.realpath(path)
        if not any(real.startswith(root) for root in roots):
            found.add(os.path.dirname(real))
    return sorted(found)


class ReloadPolicy:
    """
    Rolls the workers once the watched sources settle after a change.
    """

    def __init__(
        self, clock: IReactorTime, roll: Callable[[], "Deferred[bool]"], settle: float = SETTLE
    ) -> None:
        """
        @param roll: starts a rolling restart (L{ClusterService.rollingRestart}).
        @param settle: seconds without another change before rolling.
        """
        self._clock = clock
        self._roll = roll
        self._settle = settle
        self._pending: Any = None
        self._changed: set[str] = set()

    def changed(self, path: str) -> None:
        """
        The file at C{path} was written or moved into place.  Only Python
        sources count; their stale bytecode is removed at once (a save
        within the same second that keeps the file's size would otherwise
        leave the new worker loading the old code from C{__pycache__}).
        """
        if not path.endswith(".py"):
            return
        with contextlib.suppress(OSError, ValueError):
            os.unlink(importlib.util.cache_from_source(path))
        self._changed.add(path)
        if self._pending is not None and self._pending.active():
            self._pending.reset(self._settle)
        else:
            self._pending = self._clock.callLater(self._settle, self._fire)

    def _fire(self) -> None:
        self._pending = None
        changed, self._changed = sorted(self._changed), set()
        log.info(
            "--reload: {count} changed files ({files}): rolling the workers",
            cluster_event=logevents.RELOAD_CHANGED,
            count=len(changed), files=describeFiles(changed),
        )
        self._roll()

    def stop(self) -> None:
        """
        Forget a pending roll-out (the master is stopping).
        """
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None


def describeFiles(paths: list[str], named: int = NAMED_FILES) -> str:
    """
    The first C{named} of C{paths}, then how many more, for one log line:
    a checkout that changes thousands of files gives a short line, and a
    file name is written with its control characters escaped
    (L{escapeControls}), so that a name with a newline cannot forge a line
    of the master's log.
    """
    shown = ", ".join(escapeControls(path) for path in paths[:named])
    rest = len(paths) - named
    return f"{shown} and {rest} more" if rest > 0 else shown


def watchDirectories(
    reactor: IReactorFDSet, directories: Iterable[str], policy: ReloadPolicy
) -> Any:
    """
    Watch C{directories} with inotify and tell C{policy} of every file
    written or moved into them.

    @return: the L{twisted.internet.inotify.INotify} reader (its
        C{loseConnection} stops watching).
    @raise OSError: where inotify is not available.
    """
    from twisted.internet import inotify

    notifier = inotify.INotify(reactor)
    notifier.startReading()
    mask = inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO

    def notified(_: Any, path: FilePath[Any], events: int) -> None:
        policy.changed(os.fsdecode(path.path))

    for directory in directories:
        notifier.watch(FilePath(directory), mask=mask, callbacks=[notified])
    return notifier


def startReloading(
    reactor: MasterReactor, roll: Callable[[], "Deferred[bool]"], directories: list[str]
) -> None:
    """
    C{--reload}, once the reactor runs: warn that it is for development,
    and call C{roll} (a rolling restart) when a file in C{directories}
    changes, until the reactor stops.
    """
    log.warn(
        "--reload is for development: the workers restart whenever a source "
        "file changes; do not use it in production",
        cluster_event=logevents.RELOAD_WARNING,
        directories=directories,
    )
    if not directories:
        log.warn("--reload: no source files of the app to watch (is --app set?)",
                 cluster_event=logevents.RELOAD_NOTHING)
        return
    policy = ReloadPolicy(reactor, roll)
    try:
        notifier = watchDirectories(reactor, directories, policy)
    except OSError as e:
        log.error("--reload: cannot watch the app's files: {error}",
                  cluster_event=logevents.RELOAD_FAILED, error=e)
        return
    log.info("--reload: watching {count} directories: {paths}",
             cluster_event=logevents.RELOAD_WATCHING,
             count=len(directories), paths=", ".join(directories))
    reactor.addSystemEventTrigger("before", "shutdown", policy.stop)
    reactor.addSystemEventTrigger("before", "shutdown", notifier.loseConnection)
