"""
A worker's log events on their way to the master, one JSON event per line
(L{twisted.logger.jsonFileLogObserver} on the worker's log pipe).

JSON carries a failure's type and traceback but not its exception, an
arbitrary object: the master would print C{builtins.ValueError:
{'unpersistable': True}} where the worker had C{ValueError: no such user}.
So the exception travels as its text.
"""

from __future__ import annotations

import copy
import os

from twisted.logger import ILogObserver, LogEvent, globalLogBeginner, jsonFileLogObserver
from twisted.python.reflect import safe_str
from zope.interface import provider


def exceptionsAsText(observer: ILogObserver) -> ILogObserver:
    """
    Wrap C{observer} so that the failure of an event (C{log_failure})
    reaches it with its exception replaced by the exception's text, in a
    copy: the event the app logged is left as it is.
    """

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        failure = event.get("log_failure")
        if failure is not None and not isinstance(failure.value, str):
            clone = copy.copy(failure)
            clone.value = safe_str(failure.value)
            event = {**event, "log_failure": clone}
        observer(event)

    return observe


def logToMaster(fd: int) -> None:
    """
    Send every log event of this process to the master through C{fd}.
    """
    stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
    globalLogBeginner.beginLoggingTo(
        [exceptionsAsText(jsonFileLogObserver(stream, recordSeparator=""))],
        discardBuffer=False,
        redirectStandardIO=False,
    )
