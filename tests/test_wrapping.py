"""
Tests for L{twisted_cluster._worker.wrapping}: the worker serves each listener's
connections the way Twisted's own port for that endpoint would.
"""

from __future__ import annotations

import datetime
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransport,
)
from twisted.logger import globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site
from twisted.web.static import Data

from twisted_cluster._shared.endpointstrings import endpointKind
from twisted_cluster._worker.proxyheader import REFUSAL_LOG_INTERVAL, v1HeaderProblem
from twisted_cluster._worker.tracking import ConnectionTracker
from twisted_cluster._worker.wrapping import WrappingError, wrapperFor


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
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


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
        self.reactor = MemoryReactorClock()
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


BALANCER = IPv4Address("TCP", "127.0.0.1", 40000)


class StrictProxyHeaderTests(SynchronousTestCase):
    """
    Behind C{haproxy:}, a header that names no valid client is refused
    before the app sees a byte: the connection is closed, counted, and
    logged at most once per L{REFUSAL_LOG_INTERVAL}.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.factory = wrapperFor(self.reactor, "haproxy:tcp:8080")(
            Factory.forProtocol(_Peer)
        )
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def send(self, data: bytes) -> tuple[Any, StringTransport]:
        protocol = self.factory.buildProtocol(BALANCER)
        transport = StringTransport(peerAddress=BALANCER)
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        return protocol.wrappedProtocol, transport

    def refusals(self) -> list[dict[str, Any]]:
        return [e for e in self.logged if "refused" in e]

    def test_invalidV1HeadersAreRefusedBeforeTheApp(self) -> None:
        for header in (
            b"PROXY TCP4 999.1.1.1 10.0.0.1 5000 80\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 99999 80\r\n",
            b"PROXY TCP4 1.2.3.4\x00 10.0.0.1 5000 80\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 +5000 80\r\n",
            b"PROXY TCP4 2001:db8::1 10.0.0.1 5000 80\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 5000 80\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 5000 80 extra\r\n",
            "PROXY TCP4 1.2.3.\u0664 10.0.0.1 5000 80\r\n".encode("utf-8"),
            b"PROXY TCP4 1.2.3.4 10.0.0.1 50x0 80\r\n",
        ):
            app, transport = self.send(header + b"GET / HTTP/1.0\r\n\r\n")
            self.assertEqual(app.received, b"", header)
            self.assertTrue(transport.disconnecting, header)
            self.assertEqual(app.transport.getPeer(), BALANCER, header)

    def test_validHeadersPass(self) -> None:
        for header, peer in (
            (b"PROXY TCP4 203.0.113.7 10.0.0.1 0 65535\r\n", ("203.0.113.7", 0)),
            (b"PROXY TCP6 2001:db8::7 ::1 51234 443\r\n", ("2001:db8::7", 51234)),
            (b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n", ("127.0.0.1", 40000)),
        ):
            app, transport = self.send(header + b"hello")
            self.assertEqual(app.received, b"hello")
            self.assertFalse(transport.disconnecting)
            address = app.transport.getPeer()
            self.assertEqual((address.host, address.port), peer)
        self.assertEqual(self.refusals(), [])

    def test_aNonASCIIHeaderIsOneStructuredLine(self) -> None:
        """
        Bytes Twisted's parser cannot decode close the connection with one
        warning that says why, not a traceback.
        """
        self.send("PROXY TCP4 1.2.3.4 10.0.0.1 5000 8\u00e9\r\n".encode("utf-8"))
        [event] = self.refusals()
        self.assertEqual(event["peer"], str(BALANCER))
        self.assertNotIn("log_failure", event)
        self.assertEqual([e for e in self.logged if "log_failure" in e], [])

    def test_refusalsAreLoggedOncePerIntervalWithTheirCount(self) -> None:
        for _ in range(3):
            self.send(b"PROXY TCP4 999.1.1.1 10.0.0.1 5000 80\r\n")
        self.assertEqual([(e["refused"], e["unlogged"]) for e in self.refusals()], [(1, 0)])
        self.reactor.advance(REFUSAL_LOG_INTERVAL)
        self.send(b"PROXY TCP4 1.1.1.1 10.0.0.1 5000 99999\r\n")
        self.assertEqual(
            [(e["refused"], e["unlogged"]) for e in self.refusals()], [(1, 0), (4, 2)]
        )
        self.assertIn("is no port", self.refusals()[-1]["reason"])

    def test_v1HeaderProblemNamesWhatIsWrong(self) -> None:
        self.assertIsNone(v1HeaderProblem(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2"))
        self.assertIn("999.1.1.1", v1HeaderProblem(b"PROXY TCP4 999.1.1.1 5.6.7.8 1 2") or "")
        self.assertIn("printable", v1HeaderProblem(b"PROXY TCP4 1.2.3.4\x00 5.6.7.8 1 2") or "")


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
