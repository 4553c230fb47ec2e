"""
Unit tests of the C{twist cluster} command line (L{twisted_cluster.tap}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster.listening import DEFAULT_BACKLOG
from twisted_cluster.tap import Options


class NumericOptionTests(SynchronousTestCase):
    def test_notANumberIsRefusedInOneLine(self) -> None:
        """
        C{nan}, which C{float()} accepts, is refused like any other value
        that is not a number, before it reaches a timer or a log line.
        """
        for option in ("--health-interval", "--grace-period", "--start-timeout",
                       "--health-timeout", "--max-memory"):
            e = self.assertRaises(
                SystemExit, Options().parseOptions, [option, "nan"]
            )
            self.assertEqual(
                str(e).split(" >= ")[0],
                f"twist cluster: error: {option} must be a number",
            )
            self.assertTrue(str(e).endswith(", not 'nan'"))

    def test_infinityIsRefused(self) -> None:
        """
        C{inf} and C{-inf} are refused too: no setting means "forever".
        """
        for value in ("inf", "-inf", "Infinity"):
            e = self.assertRaises(
                SystemExit, Options().parseOptions, ["--grace-period", value]
            )
            self.assertEqual(
                str(e),
                f"twist cluster: error: --grace-period must be a number >= 0, "
                f"not {value!r}",
            )

    def test_finiteNumbersAreAccepted(self) -> None:
        options = Options()
        options.parseOptions(["--workers", "1", "--grace-period", "2.5",
                              "--health-interval", "0.5"])
        self.assertEqual((options["grace-period"], options["health-interval"]),
                         (2.5, 0.5))


class BacklogOptionTests(SynchronousTestCase):
    def test_backlogReachesTheConfiguration(self) -> None:
        options = Options()
        options.parseOptions(["--workers", "1", "--backlog", "300"])
        self.assertEqual(options.config().backlog, 300)

    def test_defaultBacklog(self) -> None:
        options = Options()
        options.parseOptions(["--workers", "1"])
        self.assertEqual(options.config().backlog, DEFAULT_BACKLOG)

    def test_backlogBelowOneIsRefusedInOneLine(self) -> None:
        e = self.assertRaises(SystemExit, Options().parseOptions, ["--backlog", "0"])
        self.assertEqual(
            str(e), "twist cluster: error: --backlog must be a whole number >= 1, not '0'"
        )


class HelpTests(SynchronousTestCase):
    def test_listenHelpHasNoIndentationRuns(self) -> None:
        """
        The help of C{--listen}, written as an indented docstring, reads as
        one paragraph: no run of spaces from the source's indentation.
        """
        lines = Options().getUsage().splitlines()
        start = next(i for i, line in enumerate(lines) if "--listen=" in line)
        column = lines[start].index("Where to listen")
        text = [lines[start][column:]]
        for line in lines[start + 1:]:
            if line[:column].strip():
                break
            text.append(line[column:])
        paragraph = " ".join(text)
        self.assertIn("(tcp:8080, tcp6:8080, unix:/path/app.sock,", paragraph)
        self.assertIn("a proxy that sends the PROXY protocol", paragraph)
        for line in text:
            self.assertNotIn("   ", line)
