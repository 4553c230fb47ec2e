"""
What a worker writes to its master: log events, one JSON event per line
(L{twisted.logger.jsonFileLogObserver} on the worker's log pipe), and the
lines of its stdout and stderr.

Worker side: JSON carries a failure's type and traceback but not its
exception, an arbitrary object: the master would print C{builtins.ValueError:
{'unpersistable': True}} where the worker had C{ValueError: no such user}.
So the exception travels as its text (L{exceptionsAsText}).  An event too
long for the master is sent as a short one that says so
(L{jsonLinesForMaster}).

Master side: a worker is untrusted (with C{--user nobody} it is an
unprivileged process talking to a root master), so everything it sends is
bounded before the master holds or formats it:

  - L{LineBuffer} splits a stream into lines of at most a limit, cutting a
    longer line and discarding its rest up to the next newline, at a cost
    linear in what was read;
  - L{eventFromWorker} turns one line of the log pipe into an event whose
    formatted text is at most L{TEXT_LIMIT} long and holds no control
    character, whatever format string and fields the worker chose, or
    refuses it with L{BadEvent};
  - L{escapeControls} makes text safe to write into a log file or a
    terminal.
"""

from __future__ import annotations

import copy
import math
import os
import re
from string import Formatter
from typing import IO, Any, Callable

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    eventAsJSON,
    eventFromJSON,
    globalLogBeginner,
)
from twisted.logger._flatten import KeyFlattener
from twisted.python.failure import Failure
from twisted.python.reflect import safe_str
from zope.interface import provider

#: The longest stdout or stderr line the master keeps, in bytes: a screenful
#: of text and many times any line a person reads in a log; a longer line
#: keeps its beginning, which says what it was.
LINE_LIMIT = 64 * 1024
#: The longest log event (one JSON line) the master reads, in bytes.  An
#: event carries its failure's whole traceback on its line: a deep Twisted
#: stack is tens of KiB, so 1 MiB leaves a wide margin while it bounds what
#: one worker can make the master hold.
EVENT_LIMIT = 1024 * 1024
#: The longest formatted text of one forwarded event, in characters.
TEXT_LIMIT = 64 * 1024
#: The largest width or precision of a format spec the master applies:
#: C{{x:>200000000}} would otherwise be a 200 MB string.
SPEC_LIMIT = 1024
#: The longest log namespace and format string kept from a worker's event.
NAME_LIMIT = 256

_CONTROLS = {
    code: f"\\x{code:02x}"
    for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
    if code != 0x09
}
# Line separators and the bidirectional overrides that reorder what a
# terminal shows.
_CONTROLS.update(
    {
        code: f"\\u{code:04x}"
        for code in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
    }
)
_NUMBER = re.compile(r"\d+")
_formatter = Formatter()


def escapeControls(text: str) -> str:
    """
    C{text} with its control characters (but tab), line separators and
    bidirectional overrides written as escapes (C{\\x1b}, C{\\u202e}): a
    worker's output cannot move the cursor, recolour a terminal, or forge a
    line of the master's log.
    """
    return text.translate(_CONTROLS)


class LineBuffer:
    """
    Splits a byte stream into lines of at most C{limit} bytes.

    A line that grows past the limit is delivered at once, cut to the limit
    and marked truncated, and the rest of it is discarded up to its
    newline: what the master holds per stream is at most C{limit} bytes, and
    each byte read is looked at once (no copy of the buffer per read).
    """

    def __init__(self, limit: int, deliver: Callable[[bytes, bool], None]) -> None:
        """
        @param limit: the most bytes of one line delivered.
        @param deliver: called with each line (without its newline) and
            whether it was cut.
        """
        self._limit = limit
        self._deliver = deliver
        self._pieces: list[bytes] = []
        self._size = 0
        self._discarding = False

    def feed(self, data: bytes) -> None:
        """
        Take the next bytes of the stream; deliver the lines they end.
        """
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data, start, len(data))
                return
            self._keep(data, start, end)
            self._endLine()
            start = end + 1

    def close(self) -> None:
        """
        The stream ended: deliver its last line if it had no newline.
        """
        if self._pieces:
            self._endLine()

    def _keep(self, data: bytes, start: int, end: int) -> None:
        if self._discarding or start == end:
            return
        room = self._limit - self._size
        if end - start > room:
            self._pieces.append(data[start : start + room])
            line = self._take()
            self._discarding = True
            self._deliver(line, True)
            return
        self._pieces.append(data[start:end])
        self._size += end - start

    def _endLine(self) -> None:
        if self._discarding:
            self._discarding = False
            return
        self._deliver(self._take(), False)

    def _take(self) -> bytes:
        line = b"".join(self._pieces)
        self._pieces = []
        self._size = 0
        return line


class BadEvent(ValueError):
    """
    A line of a worker's log pipe that is no log event.
    """


def eventFromWorker(line: bytes) -> LogEvent:
    """
    The log event that a worker sent as C{line}, made safe for the master's
    observers: its level, time, namespace and failure of the right types,
    and its formatted text bounded (see L{boundedText}).  The event keeps
    its fields; when its text is not what its format gives (cut, a spec
    over L{SPEC_LIMIT}, control characters), its format becomes
    C{"{worker_text}"}, the bounded text, and C{worker_format} keeps the
    beginning of the original format.

    @raise BadEvent: when C{line} is not a JSON object.
    """
    try:
        event = eventFromJSON(line.decode("utf-8"))
    except Exception as e:
        # Whatever the bytes: not UTF-8, not JSON, nested too deep
        # (RecursionError), a failure that cannot be rebuilt.
        raise BadEvent(f"not a JSON event ({type(e).__name__})") from None
    if not isinstance(event, dict):
        raise BadEvent(f"a JSON {type(event).__name__}, not an object")
    fmt = event.get("log_format")
    if fmt is not None and not isinstance(fmt, str):
        raise BadEvent(f"log_format is a {type(fmt).__name__}")
    if event.get("log_level") not in list(LogLevel.iterconstants()):
        event["log_level"] = LogLevel.info
    when = event.get("log_time")
    if not isinstance(when, (int, float)) or isinstance(when, bool) or not math.isfinite(when):
        event["log_time"] = None
    if "log_failure" in event and not isinstance(event["log_failure"], Failure):
        del event["log_failure"]
    for key in ("log_namespace", "log_system"):
        if key in event:
            event[key] = _shortName(event[key])
    if fmt is None:
        event.pop("log_flattened", None)
        return event
    text, flattened = boundedText(event)
    if flattened is not None:
        event["log_flattened"] = flattened
    else:
        event.pop("log_flattened", None)
        event["worker_format"] = _shortName(fmt)
        event["worker_text"] = text
        event["log_format"] = "{worker_text}"
    return event


def _shortName(value: Any) -> str:
    return escapeControls(str(value)[:NAME_LIMIT])


def boundedText(event: LogEvent, limit: int = TEXT_LIMIT) -> tuple[str, dict[str, str] | None]:
    """
    Format C{event} the way L{twisted.logger.formatEvent} would, in at most
    C{limit} characters and with its fields' control characters escaped.

    The worker's flattened values (C{log_flattened}, computed where the
    objects were) are used where present; other fields are formatted here,
    but a format spec holding a number over L{SPEC_LIMIT} or a nested field
    is not applied.  The cost is linear in the size of the event.

    @return: the text, and the flattened values that make Twisted's
        formatting give exactly that text; C{None} in their place when the
        text differs from what the format gives (cut, a spec left out, a
        field missing, control characters in the format itself).
    """
    fmt = event["log_format"]
    given = event.get("log_flattened")
    if not isinstance(given, dict):
        given = {}
    try:
        parts = list(_formatter.parse(fmt))
    except ValueError:
        return escapeControls(fmt[:limit]), None
    keys = KeyFlattener()
    flattened: dict[str, str] = {}
    out: list[str] = []
    size = 0
    exact = True
    for literal, name, spec, conversion in parts:
        text = escapeControls(literal)
        exact = exact and text == literal
        if name is not None:
            key = keys.flatKey(name, spec, conversion or "s")
            if key in given:
                piece = escapeControls(str(given[key]))
            else:
                piece, applied = _formatField(event, name, spec or "", conversion)
                exact = exact and applied
            flattened[key] = piece
            text += piece
        if size + len(text) > limit:
            out.append(text[: limit - size])
            return "".join(out) + "...", None
        out.append(text)
        size += len(text)
    return "".join(out), flattened if exact else None


def _formatField(
    event: LogEvent, name: str, spec: str, conversion: str | None
) -> tuple[str, bool]:
    """
    One field of C{event} formatted with C{spec}, escaped, and whether it
    is what Python's formatting would give.
    """
    if "{" in spec or any(
        len(n) > 6 or int(n) > SPEC_LIMIT for n in _NUMBER.findall(spec)
    ):
        return f"{{{escapeControls(name[:NAME_LIMIT])}: spec not applied}}", False
    if "." in name:
        # Attributes of values that came as JSON mean nothing, and could
        # reach into the master's own objects ("{x.__class__...}").
        return f"{{{escapeControls(name[:NAME_LIMIT])}: unformattable}}", False
    try:
        value, _ = _formatter.get_field(name, (), event)
        if conversion:
            value = _formatter.convert_field(value, conversion)
        return escapeControls(format(value, spec)), True
    except Exception:
        # A field the event lacks, a spec its value does not take, a call
        # ("{f()}") of a value that came as JSON: Twisted would print the
        # whole event instead; the field's place says what went wrong.
        return f"{{{escapeControls(name[:NAME_LIMIT])}: unformattable}}", False


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


def jsonLinesForMaster(stream: IO[str]) -> ILogObserver:
    """
    An observer that writes each event to C{stream} as one line of JSON, as
    L{twisted.logger.jsonFileLogObserver} does, except that an event whose
    line would pass L{EVENT_LIMIT} (which the master drops) becomes a short
    event that says so, with the level, namespace and beginning of the text
    of the one it stands for.
    """

    def line(event: LogEvent) -> str:
        text = eventAsJSON(event)
        if len(text) < EVENT_LIMIT // 4 or len(text.encode("utf-8")) < EVENT_LIMIT:
            return text + "\n"
        start = boundedText(event, 1000)[0] if event.get("log_format") is not None else ""
        summary: LogEvent = {
            key: event[key]
            for key in ("log_level", "log_namespace", "log_time", "log_system")
            if key in event
        }
        summary.update(
            log_format="a log event of {size} bytes, too long for the master, "
            "began: {start}",
            size=len(text),
            start=start,
        )
        return eventAsJSON(summary) + "\n"

    return FileLogObserver(stream, line)


def logToMaster(fd: int) -> None:
    """
    Send every log event of this process to the master through C{fd}.
    """
    stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
    globalLogBeginner.beginLoggingTo(
        [exceptionsAsText(jsonLinesForMaster(stream))],
        discardBuffer=False,
        redirectStandardIO=False,
    )
