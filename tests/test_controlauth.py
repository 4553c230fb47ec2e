"""
Unit tests of L{twisted_cluster._control.auth}: the access rule, the bearer
header, and the token file.
"""

from __future__ import annotations

import os
import stat

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.support import shortTempDir
from twisted_cluster._control.auth import (
    AccessPolicy,
    Peer,
    TokenFile,
    TokenFileError,
    loadToken,
    newToken,
    presentedToken,
    readToken,
)

OWNER = 1000


class AccessPolicyTests(SynchronousTestCase):
    policy = AccessPolicy("tok", OWNER)

    def test_tcpPeerNeedsTheToken(self) -> None:
        """
        A TCP peer gets in with the token only.
        """
        peer = Peer("127.0.0.1:5000")
        self.assertEqual(
            [(v.allowed, v.authenticated) for v in (
                self.policy.decide(peer, "tok"),
                self.policy.decide(peer, None),
                self.policy.decide(peer, "to"),
                self.policy.decide(peer, "tok "),
            )],
            [(True, True), (False, False), (False, False), (False, False)],
        )

    def test_unixPeerIsJudgedByUid(self) -> None:
        """
        A UNIX socket peer gets in as the master's user or root, whatever
        token it sends; any other uid, or an unknown one, is refused.
        """
        def allowed(uid: int | None, token: str | None = None) -> bool:
            return self.policy.decide(Peer("unix", True, uid, 1), token).allowed

        self.assertEqual(
            [allowed(OWNER), allowed(0), allowed(65534), allowed(65534, "tok"), allowed(None)],
            [True, True, False, False, False],
        )

    def test_optOutLetsEveryoneInUnauthenticated(self) -> None:
        policy = AccessPolicy("tok", OWNER, enforce=False)
        for peer in (Peer("10.0.0.1:1"), Peer("unix", True, 65534)):
            verdict = policy.decide(peer, None)
            self.assertEqual((verdict.allowed, verdict.authenticated), (True, False))

    def test_bearerHeader(self) -> None:
        """
        The token is read from C{Authorization: Bearer TOKEN}, scheme in any
        case; other schemes and an empty value are no token.
        """
        cases = {
            b"Bearer abc": "abc", b"bearer  abc ": "abc", b"Basic abc": None,
            b"Bearer": None, b"Bearer ": None,
        }
        for header, expected in cases.items():
            request = DummyRequest([])
            request.requestHeaders.addRawHeader(b"authorization", header)
            self.assertEqual(presentedToken(request), expected, header)
        self.assertIsNone(presentedToken(DummyRequest([])))

    def test_tokensAreLongAndDistinct(self) -> None:
        tokens = {newToken() for _ in range(10)}
        self.assertEqual(len(tokens), 10)
        self.assertTrue(all(len(t) >= 40 for t in tokens))


class TokenFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = shortTempDir(self)
        self.path = os.path.join(self.directory, "tcp-9100.token")

    def test_createdWithMode0600AndRemovedAtStop(self) -> None:
        """
        The token file is a regular file of mode 0600 holding the token;
        L{TokenFile.remove} removes it and its lock.
        """
        tokenFile = TokenFile(self.path)
        tokenFile.create("abc")
        status = os.lstat(self.path)
        self.assertTrue(stat.S_ISREG(status.st_mode))
        self.assertEqual(stat.S_IMODE(status.st_mode), 0o600)
        self.assertEqual(readToken(self.path), "abc")
        tokenFile.remove()
        self.assertEqual(os.listdir(self.directory), [])

    def test_symlinkIsNotFollowed(self) -> None:
        """
        A symlink planted at the path (to redirect the token somewhere
        others can read) is refused and its target left alone.
        """
        target = os.path.join(self.directory, "elsewhere")
        os.symlink(target, self.path)
        self.assertRaises(TokenFileError, TokenFile(self.path).create, "abc")
        self.assertFalse(os.path.exists(target))
        self.assertTrue(os.path.islink(self.path))

    def test_fileThatIsNotATokenFileIsKept(self) -> None:
        """
        An existing file that is not a token file of ours (here: mode 0644)
        is an error, and is not deleted.
        """
        with open(self.path, "w") as f:
            f.write("precious\n")
        os.chmod(self.path, 0o644)
        self.assertRaises(TokenFileError, TokenFile(self.path).create, "abc")
        with open(self.path) as f:
            self.assertEqual(f.read(), "precious\n")

    def test_tokenOfAKilledMasterIsReplaced(self) -> None:
        """
        A token file whose lock names a dead process was left by a killed
        master: it is replaced.
        """
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"old\n")
        os.close(fd)
        os.symlink(str(2**22 + 1), self.path + ".lock")
        tokenFile = TokenFile(self.path)
        tokenFile.create("new")
        self.assertEqual(readToken(self.path), "new")
        tokenFile.remove()

    def test_tokenOfALiveMasterIsRefused(self) -> None:
        """
        While one master holds the path, another cannot take it.
        """
        first = TokenFile(self.path)
        first.create("one")
        self.addCleanup(first.remove)
        error = self.assertRaises(TokenFileError, TokenFile(self.path).create, "two")
        self.assertIn("another running master", str(error))
        self.assertEqual(readToken(self.path), "one")

    def test_onlyTheFileItCreatedIsRemoved(self) -> None:
        """
        If the path was replaced meanwhile, L{TokenFile.remove} leaves the
        new file alone.
        """
        tokenFile = TokenFile(self.path)
        tokenFile.create("abc")
        os.unlink(self.path)
        with open(self.path, "w") as f:
            f.write("someone else's\n")
        tokenFile.remove()
        self.assertTrue(os.path.exists(self.path))


class LoadTokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = shortTempDir(self)

    def write(self, text: str, mode: int) -> str:
        path = os.path.join(self.directory, "given.token")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def test_operatorsTokenFileIsRead(self) -> None:
        """
        A token file the operator made, of mode 0600 or 0640 (a group such
        as Prometheus's may read it), gives its token.
        """
        for mode in (0o600, 0o640, 0o400):
            self.assertEqual(loadToken(self.write("a" * 20 + "\n", mode)), "a" * 20)

    def test_fileOthersMayReadOrWriteIsRefused(self) -> None:
        for mode in (0o644, 0o660, 0o602):
            self.assertRaises(TokenFileError, loadToken, self.write("a" * 20, mode))

    def test_shortOrOddTokenIsRefused(self) -> None:
        for text in ("short", "a" * 10 + " " + "b" * 10, "a" * 200, ""):
            self.assertRaises(TokenFileError, loadToken, self.write(text, 0o600))

    def test_symlinkIsRefused(self) -> None:
        target = self.write("a" * 20, 0o600)
        link = os.path.join(self.directory, "link.token")
        os.symlink(target, link)
        self.assertRaises(TokenFileError, loadToken, link)
