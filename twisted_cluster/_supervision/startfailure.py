"""
How a new worker failed to start, as structured fields for the log.

A worker that cannot load the app sends its one-line error and the
traceback of the user's code (L{twisted_cluster._contract.commands.StartupFailed});
an operator reading "rolling restart aborted" wants the file and line to
open, without digging the traceback out of another line.
"""

from __future__ import annotations

import re
from typing import Any

import attr

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]*)", line (?P<line>\d+)', re.MULTILINE)


@attr.s(frozen=True, auto_attribs=True)
class StartFailure:
    """
    Why and where one worker failed to start.

    @ivar how: how its process ended (C{"exit 3"}, C{"spawn failed: ..."}).
    @ivar error: the app's one-line load error, if the worker sent one.
    @ivar file: the file of the traceback's last frame, if there was one.
    @ivar line: the line in C{file}.
    @ivar exception: the traceback's last line (C{"ValueError: no"}).
    """

    how: str
    error: str | None = None
    file: str | None = None
    line: int | None = None
    exception: str | None = None

    @classmethod
    def fromWorker(cls, how: str, error: str | None, details: str) -> "StartFailure":
        """
        The failure of a worker that ended as C{how}, after sending the app
        load error C{error} with the traceback C{details} (possibly empty).
        """
        frames = list(_FRAME.finditer(details))
        lines = [line.strip() for line in details.splitlines() if line.strip()]
        last = frames[-1] if frames else None
        return cls(
            how=how,
            error=error,
            file=last.group("file") if last else None,
            line=int(last.group("line")) if last else None,
            exception=lines[-1] if lines and frames else None,
        )

    def fields(self) -> dict[str, Any]:
        """
        The log event fields: C{how}, C{error}, C{error_file},
        C{error_line}, C{exception}.
        """
        return {
            "how": self.how,
            "error": self.error,
            "error_file": self.file,
            "error_line": self.line,
            "exception": self.exception,
        }
