"""
Unit tests of L{twisted_cluster.ctl}: finding the master and printing its
status.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.observability_fakes import FakeProcess, twoWorkers
from tests.support import shortTempDir
from twisted_cluster._control.metrics import clusterStatus
from twisted_cluster.ctl import CtlError, Target, findTarget, findToken, formatStatus


class FindTargetTests(SynchronousTestCase):
    def test_endpointStringsOfTheMasterAreUnderstood(self) -> None:
        """
        The value given to the master's C{--control}, its logged address, a
        URL or a bare socket path all lead to the control site.
        """
        cases = {
            "unix:/run/x/1.sock:mode=600:lockfile=1": Target("http://localhost/", "/run/x/1.sock"),
            "unix:address=/run/x.sock": Target("http://localhost/", "/run/x.sock"),
            "/run/x.sock": Target("http://localhost/", "/run/x.sock"),
            "tcp:9100:interface=127.0.0.1": Target("http://127.0.0.1:9100/"),
            "tcp:9100": Target("http://127.0.0.1:9100/"),
            "http://127.0.0.1:9100/": Target("http://127.0.0.1:9100/"),
            "http://127.0.0.1:9100": Target("http://127.0.0.1:9100/"),
        }
        for control, expected in cases.items():
            self.assertEqual(findTarget(control), expected, control)

    def test_theOneLiveMasterIsFound(self) -> None:
        """
        Without C{--control}, the socket of the one live master in the
        runtime directory is used; sockets of dead masters are ignored.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        live = os.path.join(directory, f"{os.getpid()}.sock")
        for path in (live, os.path.join(directory, f"{2**22 + 1}.sock")):
            open(path, "w").close()
        self.assertEqual(findTarget(None, directory), Target("http://localhost/", live))

    def test_noMasterIsAClearError(self) -> None:
        """
        With no live master, the error says where it looked.
        """
        directory = self.mktemp()
        error = self.assertRaises(CtlError, findTarget, None, directory)
        self.assertIn(directory, str(error))

    def test_severalMastersMustBeChosenFrom(self) -> None:
        """
        With several live masters, the error lists their sockets.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        for pid in (os.getpid(), os.getppid()):
            open(os.path.join(directory, f"{pid}.sock"), "w").close()
        error = self.assertRaises(CtlError, findTarget, None, directory)
        self.assertIn(f"unix:{directory}/{os.getpid()}.sock", str(error))

    def test_unknownEndpointIsAClearError(self) -> None:
        """
        An endpoint the client cannot reach (not UNIX, TCP or a URL) is an
        error, not a guess.
        """
        self.assertRaises(CtlError, findTarget, "ssl:443")


class FindTokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.runtime = shortTempDir(self)
        self.patch(os, "environ", dict(os.environ, XDG_RUNTIME_DIR=self.runtime))
        self.directory = os.path.join(self.runtime, "twisted-cluster")
        os.mkdir(self.directory, 0o700)

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_defaultTokenFileIsFoundFromThePort(self) -> None:
        """
        For a TCP control site, the token is read from C{tcp-PORT.token} in
        the runtime directory, whether the site was named by endpoint
        string or URL.
        """
        self.write("tcp-9100.token", "abc\n")
        for control in ("tcp:9100:interface=127.0.0.1", "http://127.0.0.1:9100/"):
            self.assertEqual(findToken(findTarget(control)), "abc", control)

    def test_namedTokenFileWins(self) -> None:
        self.write("tcp-9100.token", "abc\n")
        other = self.write("other.token", "xyz\n")
        self.assertEqual(findToken(findTarget("tcp:9100"), other), "xyz")

    def test_noDefaultTokenFileSendsNone(self) -> None:
        """
        Without a token file (a master with C{--control-no-auth}), no token
        is sent; over a UNIX socket none is needed.
        """
        self.assertIsNone(findToken(findTarget("tcp:9100")))
        self.write("tcp-9100.token", "abc\n")
        self.assertIsNone(findToken(findTarget("unix:/run/c.sock")))

    def test_unreadableNamedTokenFileIsAClearError(self) -> None:
        missing = os.path.join(self.directory, "missing.token")
        error = self.assertRaises(CtlError, findToken, findTarget("tcp:9100"), missing)
        self.assertIn(missing, str(error))
        empty = self.write("empty.token", "\n")
        self.assertRaises(CtlError, findToken, findTarget("tcp:9100"), empty)


class FormatTests(SynchronousTestCase):
    def test_tableHasOneRowPerWorkerProcess(self) -> None:
        """
        The table has a header and one aligned row per worker process, with
        readable memory, uptime and ping.
        """
        service = twoWorkers()
        assert service.supervisor is not None
        service.supervisor.extra.append(FakeProcess(2, 103, "draining", startedAt=0.0))
        clock = Clock()
        clock.advance(3700)
        lines = formatStatus(clusterStatus(service, clock)).splitlines()
        header = lines.index(next(line for line in lines if line.startswith("ID")))
        rows = [line.split() for line in lines[header + 1:]]
        self.assertEqual(
            lines[header].split(),
            ["ID", "PID", "STATE", "UPTIME", "RESTARTS", "OPEN", "SERVED",
             "DISPATCHED", "RSS", "PING"],
        )
        self.assertEqual(
            rows[0], ["1", "101", "ready", "1h1m", "0", "3", "40", "43", "47.7MiB", "2.0ms"]
        )
        self.assertEqual(rows[2][:3], ["2", "103", "draining"])
        self.assertEqual(len({len(line) for line in lines[header:header + 2]}), 1)

    def test_summaryCountsWorkersAndConnections(self) -> None:
        """
        Above the table: ready and wanted workers, connections, restarts.
        """
        service = twoWorkers()
        assert service.supervisor is not None
        service.supervisor.restarts.update({"crash": 1})
        service.acceptedCount = 85
        text = formatStatus(clusterStatus(service, Clock()))
        self.assertIn("workers: 2 ready of 2 wanted", text)
        self.assertIn("85 accepted", text)
        self.assertIn("restarts: crash 1", text)
