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


class MissingTLSLibraryTests(SynchronousTestCase):
    """
    An C{ssl:} endpoint without pyOpenSSL says what to install, in the
    master (parsing C{--listen}) and in a worker (setting up TLS).
    """

    def setUp(self) -> None:
        from twisted_cluster import listening, wrapping

        def noOpenSSL(reactor: object, description: str) -> None:
            raise ModuleNotFoundError("No module named 'OpenSSL'", name="OpenSSL")

        self.patch(listening, "serverFromString", noOpenSSL)
        self.patch(wrapping, "serverFromString", noOpenSSL)

    def test_masterSuggestsTheTLSExtra(self) -> None:
        e = self.assertRaises(
            ListenError, parseEndpoint, MemoryReactor(), "ssl:443:privateKey=k.pem"
        )
        self.assertEqual(
            str(e),
            "bad --listen endpoint 'ssl:443:privateKey=k.pem': TLS needs "
            "pyOpenSSL, which is not installed: pip install 'twisted-cluster[tls]'",
        )

    def test_workerSuggestsTheTLSExtra(self) -> None:
        from twisted_cluster.wrapping import WrappingError, wrapperFor

        e = self.assertRaises(
            WrappingError, wrapperFor, MemoryReactor(), "ssl:443:privateKey=k.pem"
        )
        self.assertIn("pip install 'twisted-cluster[tls]'", str(e))

    def test_otherMissingModulesAreReportedAsTheyAre(self) -> None:
        from twisted_cluster.wrapping import explainParseError

        self.assertEqual(
            explainParseError(ModuleNotFoundError("No module named 'x'", name="x")),
            "No module named 'x'",
        )
