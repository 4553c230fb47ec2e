"""
Tests for the one-line errors of L{twisted_cluster.listening.parseEndpoint}
on the production endpoints: C{systemd:} without inherited sockets, and
C{ssl:} with a key that does not load.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster.listening import ListenError, parseEndpoint


class ParseEndpointErrorTests(SynchronousTestCase):
    def test_systemdWithoutInheritedSocketSaysSo(self) -> None:
        """
        A C{systemd:} endpoint outside socket activation is an error that
        names the variables systemd sets, not a traceback.
        """
        error = self.assertRaises(
            ListenError, parseEndpoint, MemoryReactor(), "systemd:domain=INET:index=5"
        )
        self.assertIn("no such socket passed by systemd", str(error))
        self.assertNotIn("\n", str(error))

    def test_sslKeyThatDoesNotLoadIsOneLine(self) -> None:
        """
        A key file that is not a key gives a L{ListenError} naming the
        endpoint (pyOpenSSL's own error type included).
        """
        key = FilePath(self.mktemp())
        key.setContent(b"not a key")
        description = f"ssl:0:privateKey={key.path}"
        error = self.assertRaises(ListenError, parseEndpoint, MemoryReactor(), description)
        self.assertIn(f"bad --listen endpoint {description!r}", str(error))
        self.assertNotIn("\n", str(error))
