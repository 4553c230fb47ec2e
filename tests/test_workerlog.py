"""
Tests for L{twisted_cluster._shared.workerlog} and the master's reading of a
worker's output (L{twisted_cluster._supervision.process._WorkerOutput}): a worker's
failures reach the master's log with their exception's text, and nothing a
worker writes costs the master more than a bounded amount.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.logger import (
    LogLevel,
    eventAsJSON,
    eventFromJSON,
    formatEvent,
    formatEventAsClassicLogText,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster._contract import LOG_FD
from twisted_cluster._shared.workerlog import (
    EVENT_LIMIT,
    LINE_LIMIT,
    TEXT_LIMIT,
    LineBuffer,
    eventFromWorker,
    exceptionsAsText,
    jsonLinesForMaster,
)
from twisted_cluster._supervision.process import _WorkerOutput


def failure() -> Failure:
    try:
        raise ValueError("no such user")
    except ValueError:
        return Failure()


class ExceptionsAsTextTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.observer = exceptionsAsText(self.seen.append)

    def test_theExceptionSurvivesJSON(self) -> None:
        """
        What the master reads back names the exception and its message,
        not C{{'unpersistable': True}}.
        """
        self.observer({"log_format": "it failed", "log_failure": failure()})
        [event] = self.seen
        received = eventFromJSON(eventAsJSON(event))
        traceback = received["log_failure"].getTraceback()
        self.assertTrue(
            traceback.rstrip().endswith("builtins.ValueError: no such user"), traceback
        )
        self.assertNotIn("unpersistable", traceback)

    def test_theLoggedEventIsLeftAlone(self) -> None:
        logged = failure()
        event = {"log_format": "it failed", "log_failure": logged}
        self.observer(event)
        self.assertIs(event["log_failure"], logged)
        self.assertIsInstance(logged.value, ValueError)
        self.assertIs(self.seen[0]["log_failure"].type, ValueError)

    def test_eventsWithoutAFailurePassAsTheyAre(self) -> None:
        event = {"log_format": "hello"}
        self.observer(event)
        self.assertIs(self.seen[0], event)


class JSONLinesForMasterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.stream = io.StringIO()
        self.observer = jsonLinesForMaster(self.stream)

    def test_eventsAreJSONLines(self) -> None:
        self.observer({"log_format": "served {path}", "path": "/", "log_level": LogLevel.info})
        event = eventFromWorker(self.stream.getvalue().encode())
        self.assertEqual(formatEvent(event), "served /")

    def test_anEventTooLongForTheMasterIsSentAsAShortOne(self) -> None:
        """
        The master drops a line over L{EVENT_LIMIT}: the worker sends, in
        its place, a short event with the beginning of its text.
        """
        self.observer({
            "log_format": "got {body}", "body": "b" * EVENT_LIMIT,
            "log_level": LogLevel.warn, "log_namespace": "app",
        })
        line = self.stream.getvalue().encode()
        self.assertLess(len(line), 4096)
        self.assertEqual(line.count(b"\n"), 1)
        event = eventFromWorker(line)
        self.assertGreater(event["size"], EVENT_LIMIT)
        self.assertEqual((event["log_level"], event["log_namespace"]), (LogLevel.warn, "app"))
        self.assertTrue(event["start"].startswith("got bbb"))


class LineBufferTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.lines: list[tuple[bytes, bool]] = []
        self.buffer = LineBuffer(10, lambda line, cut: self.lines.append((line, cut)))

    def test_linesAreJoinedAcrossReads(self) -> None:
        self.buffer.feed(b"ab")
        self.buffer.feed(b"c\nde")
        self.buffer.feed(b"\n\n")
        self.assertEqual(self.lines, [(b"abc", False), (b"de", False), (b"", False)])

    def test_aLineOfTheLimitIsWhole(self) -> None:
        self.buffer.feed(b"0123456789\n")
        self.assertEqual(self.lines, [(b"0123456789", False)])

    def test_aLongerLineIsCutAtOnceAndItsRestDiscarded(self) -> None:
        """
        The beginning of a line past the limit is delivered as soon as the
        limit is passed, marked cut; the rest, up to the newline, is
        dropped; the next line is whole again.
        """
        self.buffer.feed(b"01234")
        self.buffer.feed(b"56789abc")
        self.assertEqual(self.lines, [(b"0123456789", True)])
        self.buffer.feed(b"def" * 1000)
        self.buffer.feed(b"ghi\nnext\n")
        self.assertEqual(self.lines, [(b"0123456789", True), (b"next", False)])

    def test_theLastLineWithoutNewlineIsDeliveredAtTheEnd(self) -> None:
        self.buffer.feed(b"one\ntwo")
        self.buffer.close()
        self.assertEqual(self.lines, [(b"one", False), (b"two", False)])


class _Worker:
    """
    The L{twisted_cluster._supervision.process.WorkerProcess} attributes that
    L{_WorkerOutput} reads.
    """

    workerId = 1
    pid = 4242
    name = "worker-1[4242]"


def jsonLine(**event: Any) -> bytes:
    return eventAsJSON(event).encode("utf-8") + b"\n"


class WorkerOutputTests(SynchronousTestCase):
    """
    L{_WorkerOutput}, fed as the reactor would feed it: whatever a worker
    writes, the master holds and logs a bounded amount.
    """

    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.output = _WorkerOutput(_Worker(), self.events.append)  # type: ignore[arg-type]

    def test_endlessStdoutLineIsCutAndNotHeld(self) -> None:
        """
        4 MiB written to stdout without a newline give one event, at once,
        with the line's first L{LINE_LIMIT} bytes, marked truncated; the
        rest is dropped up to the newline.
        """
        chunk = b"x" * 65536
        for _ in range(64):
            self.output.childDataReceived(1, chunk)
        [event] = self.events
        self.assertEqual(len(event["line"]), LINE_LIMIT)
        self.assertIs(event["truncated"], True)
        self.output.childDataReceived(1, b"tail\nnext line\n")
        self.assertEqual([e["line"] for e in self.events[1:]], ["next line"])
        self.assertIs(self.events[1]["truncated"], False)

    def test_printedLinesNameTheWorkerInTextLogs(self) -> None:
        """
        A stdout line keeps the worker's name as its namespace, which text
        logs show, and its id and pid as fields.
        """
        self.output.childDataReceived(1, b"hello\n")
        self.output.childDataReceived(2, b"oops\n")
        out, err = self.events
        self.assertEqual(out["log_namespace"], "worker-1[4242] stdout")
        self.assertEqual(err["log_namespace"], "worker-1[4242] stderr")
        self.assertEqual((out["worker_id"], out["worker_pid"]), (1, 4242))
        self.assertIn("[worker-1[4242] stdout#info] hello", formatEventAsClassicLogText(out))

    def test_controlCharactersOfPrintedLinesAreEscaped(self) -> None:
        self.output.childDataReceived(1, b"\x1b[31mred\x07\r\x00 \xe2\x80\xae\r\n")
        [event] = self.events
        self.assertEqual(event["line"], "\\x1b[31mred\\x07\\x0d\\x00 \\u202e")

    def test_aLineThatIsNoObjectIsSkippedCountedAndTheNextForwarded(self) -> None:
        """
        A log pipe line that is JSON but no object, or no JSON, is dropped
        with a warning that counts it; the events after it still arrive.
        """
        for bad in (b"[1, 2]\n", b"42\n", b"{not json\n", b"\xff\xfe\n", b"[" * 100000 + b"\n"):
            self.output.childDataReceived(LOG_FD, bad)
        self.output.childDataReceived(LOG_FD, jsonLine(log_format="still here", log_namespace="app"))
        warnings = [e for e in self.events if "dropped" in e]
        self.assertEqual([e["dropped"] for e in warnings], [1, 2, 3, 4, 5])
        self.assertEqual({e["worker_id"] for e in warnings}, {1})
        [forwarded] = [e for e in self.events if e.get("log_format") == "still here"]
        self.assertEqual(forwarded["log_namespace"], "worker-1[4242] app")
        self.assertEqual(self.output.dropped, 5)

    def test_anEventOverTheLimitIsDroppedAndTheNextForwarded(self) -> None:
        self.output.childDataReceived(LOG_FD, jsonLine(log_format="{x}", x="y" * EVENT_LIMIT))
        self.output.childDataReceived(LOG_FD, jsonLine(log_format="after"))
        [warning, after] = self.events
        self.assertEqual(warning["dropped"], 1)
        self.assertEqual(after["log_format"], "after")

    def test_aHugeFormatSpecIsNotApplied(self) -> None:
        """
        A worker's event whose format pads a field to 20 MB formats, in the
        master, to a short text.
        """
        line = b'{"log_format": "{x:>20000000} and {y}", "x": 1, "y": "z"}\n'
        self.output.childDataReceived(LOG_FD, line)
        [event] = self.events
        text = formatEvent(event)
        self.assertLess(len(text), 100, text[:100])
        self.assertIn("and z", text)
        self.assertEqual(event["worker_format"], "{x:>20000000} and {y}")

    def test_aRepeatedFieldIsCutAtTheTextLimit(self) -> None:
        """
        A short format that repeats a long field cannot multiply it: the
        text stops at L{TEXT_LIMIT}, whatever Twisted's observers do with it.
        """
        line = json.dumps({"log_format": "{x}" * 20000, "x": "y" * 5000}).encode() + b"\n"
        self.output.childDataReceived(LOG_FD, line)
        [event] = self.events
        self.assertEqual(event["worker_id"], 1)
        self.assertEqual(event["log_format"], "{worker_text}")
        self.assertLessEqual(len(formatEvent(event)), TEXT_LIMIT + 3)
        self.assertLessEqual(len(eventAsJSON(event)), len(line) + 4 * TEXT_LIMIT)

    def test_anOrdinaryEventKeepsItsFormatAndFields(self) -> None:
        """
        An event of Twisted's JSON observer reads as Twisted would read it.
        """
        line = jsonLine(log_format="served {path!r} in {t:.2f}s", path="/a", t=0.5,
                        log_namespace="app", log_level=LogLevel.warn)
        self.output.childDataReceived(LOG_FD, line)
        [event] = self.events
        self.assertEqual(event["log_format"], "served {path!r} in {t:.2f}s")
        self.assertEqual(formatEvent(event), formatEvent(eventFromJSON(line.decode())))
        self.assertIn("served '/a' in 0.5", formatEvent(event))
        self.assertIs(event["log_level"], LogLevel.warn)
        self.assertEqual((event["path"], event["worker_id"]), ("/a", 1))
        self.assertNotIn("worker_format", event)

    def test_controlCharactersOfEventFieldsAreEscaped(self) -> None:
        self.output.childDataReceived(
            LOG_FD, jsonLine(log_format="GET {path}", path="/\x1b[2J\nfake master line")
        )
        [event] = self.events
        self.assertEqual(formatEvent(event), "GET /\\x1b[2J\\x0afake master line")
        self.assertEqual(event["path"], "/\x1b[2J\nfake master line")

    def test_fieldsOfTheWrongTypeDoNotBreakTextLogs(self) -> None:
        """
        A level, time or failure of the wrong type is replaced: the
        master's text observers can format the event.
        """
        line = b'{"log_format": "x", "log_level": "loud", "log_time": "now", "log_failure": 3}\n'
        self.output.childDataReceived(LOG_FD, line)
        [event] = self.events
        self.assertIs(event["log_level"], LogLevel.info)
        self.assertNotIn("log_failure", event)
        self.assertIn("x", formatEventAsClassicLogText(event) or "")
