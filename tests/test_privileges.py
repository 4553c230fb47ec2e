"""
Tests for L{twisted_cluster._shared.privileges}: whom the workers run as.
"""

from __future__ import annotations

import grp
import os
import pwd

from twisted.trial.unittest import SynchronousTestCase

from twisted_cluster._shared.privileges import (
    Credentials,
    PrivilegeError,
    checkCanSwitch,
    resolveCredentials,
)


class ResolveCredentialsTests(SynchronousTestCase):
    def setUp(self) -> None:
        try:
            self.nobody = pwd.getpwnam("nobody")
        except KeyError:
            raise self.skipTest("this system has no user 'nobody'") from None

    def test_noOptionsKeepTheMastersUser(self) -> None:
        """
        Without C{--user} and C{--group}, workers run as the master does.
        """
        self.assertIsNone(resolveCredentials(None, None))

    def test_userByNameTakesItsPrimaryGroup(self) -> None:
        """
        C{--user NAME} alone gives that user's id and primary group.
        """
        credentials = resolveCredentials("nobody", None)
        assert credentials is not None
        self.assertEqual((credentials.uid, credentials.gid),
                         (self.nobody.pw_uid, self.nobody.pw_gid))
        self.assertIn(self.nobody.pw_gid, credentials.groups)

    def test_userByNumberIsTheSameUser(self) -> None:
        """
        A numeric C{--user} is a uid.
        """
        self.assertEqual(resolveCredentials(str(self.nobody.pw_uid), None),
                         resolveCredentials("nobody", None))

    def test_groupOverridesThePrimaryGroup(self) -> None:
        """
        C{--group} replaces the user's primary group.
        """
        root = grp.getgrgid(0).gr_name
        credentials = resolveCredentials("nobody", root)
        assert credentials is not None
        self.assertEqual(credentials.gid, 0)

    def test_unknownUserOrGroupIsOneLineError(self) -> None:
        """
        An unknown name is a L{PrivilegeError} that names it.
        """
        error = self.assertRaises(PrivilegeError, resolveCredentials, "no-such-user-x", None)
        self.assertEqual(str(error), "no such user: 'no-such-user-x'")
        error = self.assertRaises(PrivilegeError, resolveCredentials, None, "no-such-group-x")
        self.assertEqual(str(error), "no such group: 'no-such-group-x'")


class CheckCanSwitchTests(SynchronousTestCase):
    def test_ownCredentialsNeedNoRoot(self) -> None:
        """
        Asking for the user the master already is never fails.
        """
        checkCanSwitch(None)
        checkCanSwitch(Credentials(os.geteuid(), os.getegid(), ()))

    def test_otherUserNeedsRoot(self) -> None:
        """
        A master that is not root cannot make workers run as someone else,
        and says so before starting anything.
        """
        if os.geteuid() == 0:
            self.patch(os, "geteuid", lambda: 1000)
            self.patch(os, "getegid", lambda: 1000)
        other = Credentials(os.geteuid() + 1, os.getegid(), ())
        error = self.assertRaises(PrivilegeError, checkCanSwitch, other)
        self.assertIn("need the master to start as root", str(error))
