"""
Tests for L{twisted_cluster.wrapping}: the worker serves each listener's
connections the way Twisted's own port for that endpoint would.
"""

from __future__ import annotations

import datetime

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site
from twisted.web.static import Data

from twisted_cluster.tracking import ConnectionTracker
from twisted_cluster.wrapping import WrappingError, endpointKind, wrapperFor


def selfSignedPEM(hostname: str = "localhost") -> tuple[bytes, bytes]:
    """
    A fresh self-signed certificate for C{hostname} (also valid for
    127.0.0.1) and its key, both PEM.
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    keyPEM = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), keyPEM


class _Peer(Protocol):
    def connectionMade(self) -> None:
        self.peer = self.transport.getPeer()


class EndpointKindTests(SynchronousTestCase):
    def test_kindIsTheEndpointType(self) -> None:
        """
        The kind is the endpoint type, in lower case; a bare port is TCP.
        """
        self.assertEqual(endpointKind("ssl:443:privateKey=k.pem"), "ssl")
        self.assertEqual(endpointKind("HAProxy:tcp:80"), "haproxy")
        self.assertEqual(endpointKind("systemd:domain=INET:index=0"), "systemd")
        self.assertEqual(endpointKind("8080"), "tcp")


class WrapperForTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.app = Factory.forProtocol(_Peer)

    def test_plainEndpointsServeTheAppAsItIs(self) -> None:
        """
        TCP, UNIX and systemd listeners hand connections to the app's own
        factory: no wrapper in the data path.  A systemd endpoint is not
        parsed in the worker (its descriptors belong to the master).
        """
        for description in ["tcp:8080", "tcp6:8080", "unix:/tmp/x.sock",
                            "systemd:domain=INET:index=7", "8080"]:
            self.assertIs(wrapperFor(self.reactor, description)(self.app), self.app)

    def test_haproxyEndpointGivesTheAppTheProxiedClientAddress(self) -> None:
        """
        Behind C{haproxy:}, the app's transport reports the client address
        from the PROXY header, not the proxy's.
        """
        factory = wrapperFor(self.reactor, "haproxy:tcp:8080")(self.app)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        protocol.makeConnection(transport)
        protocol.dataReceived(b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 8080\r\n")
        app = protocol.wrappedProtocol
        self.assertEqual(app.transport.getPeer(), IPv4Address("TCP", "203.0.113.7", 51234))

    def test_haproxyWithoutHeaderClosesTheConnection(self) -> None:
        """
        A client that talks to a C{haproxy:} listener directly, without a
        PROXY header, is disconnected (it cannot spoof an address).
        """
        factory = wrapperFor(self.reactor, "haproxy:tcp:8080")(self.app)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.disconnecting)

    def test_sslEndpointWrapsTheAppInTLS(self) -> None:
        """
        An C{ssl:} listener's connections are served through a TLS server
        wrapper that uses the certificate and key the endpoint names.
        """
        certPEM, keyPEM = selfSignedPEM()
        directory = FilePath(self.mktemp())
        directory.makedirs()
        directory.child("cert.pem").setContent(certPEM)
        directory.child("key.pem").setContent(keyPEM)
        description = (
            f"ssl:443:privateKey={directory.child('key.pem').path}"
            f":certKey={directory.child('cert.pem').path}"
        )
        factory = wrapperFor(self.reactor, description)(self.app)
        self.assertIsInstance(factory, TLSMemoryBIOFactory)
        self.assertIs(factory.wrappedFactory, self.app)

    def test_haproxyOverSslReadsTheHeaderBeforeTLS(self) -> None:
        """
        C{haproxy:ssl:...} reads the PROXY header first, in clear, then
        does TLS: the order in which HAProxy's C{ssl send-proxy-v2} sends
        them.
        """
        certPEM, keyPEM = selfSignedPEM()
        path = FilePath(self.mktemp())
        path.setContent(keyPEM + certPEM)
        factory = wrapperFor(self.reactor, f"haproxy:ssl:443:privateKey={path.path}")(self.app)
        self.assertNotIsInstance(factory, TLSMemoryBIOFactory)
        self.assertIsInstance(factory.wrappedFactory, TLSMemoryBIOFactory)
        self.assertIs(factory.wrappedFactory.wrappedFactory, self.app)

    def test_unreadableKeyIsAWrappingError(self) -> None:
        """
        A key that cannot be loaded is reported in one line that names the
        endpoint.
        """
        missing = self.mktemp()
        error = self.assertRaises(
            WrappingError, wrapperFor, self.reactor, f"ssl:443:privateKey={missing}"
        )
        self.assertIn("cannot set up TLS", str(error))
        self.assertIn(missing, str(error))


class TrackerNegotiationTests(SynchronousTestCase):
    def test_trackerOffersTheAppsALPNProtocols(self) -> None:
        """
        The connection tracker advertises the protocols its app speaks, so
        that a TLS handshake with an ALPN-offering client (curl, browsers)
        succeeds.
        """
        from twisted.internet.interfaces import IProtocolNegotiationFactory

        site = Site(Data(b"x", "text/plain"))
        tracker = ConnectionTracker(site)
        self.assertTrue(IProtocolNegotiationFactory.providedBy(tracker))
        self.assertEqual(tracker.acceptableProtocols(), site.acceptableProtocols())
        plain = ConnectionTracker(Factory.forProtocol(Protocol))
        self.assertFalse(IProtocolNegotiationFactory.providedBy(plain))
