"""
Run the workers as an unprivileged user (C{--user}, C{--group}).

The master starts as root so that it can bind ports below 1024 (and read
TLS keys that only root may read); it never runs the app's code.  Each
worker starts as root too, loads what only root may read (the TLS
certificate and key of its C{ssl:} listeners), then gives up root for good
before it imports the app.  This is nginx's and gunicorn's arrangement:
the process that parses untrusted requests cannot regain root.
"""

from __future__ import annotations

import grp
import os
import pwd
from typing import Iterable

import attr


class PrivilegeError(Exception):
    """
    A user or group does not exist, or the switch to it failed.
    """


def _ids(ids: Iterable[int]) -> tuple[int, ...]:
    # A typed converter: attrs' mypy plugin cannot type C{converter=tuple}.
    return tuple(ids)


@attr.s(frozen=True, auto_attribs=True)
class Credentials:
    """
    Whom a worker runs as.

    @ivar uid: the user id.
    @ivar gid: the primary group id.
    @ivar groups: the supplementary group ids.
    """

    uid: int
    gid: int
    groups: tuple[int, ...] = attr.ib(default=(), converter=_ids)


def _lookupUser(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, ValueError):
        raise PrivilegeError(f"no such user: {user!r}") from None


def _lookupGroup(group: str) -> int:
    try:
        return grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
    except (KeyError, ValueError):
        raise PrivilegeError(f"no such group: {group!r}") from None


def resolveCredentials(user: str | None, group: str | None) -> Credentials | None:
    """
    The credentials that C{--user USER} and C{--group GROUP} name (a name or
    a number each): the user's id, the group (default: the user's primary
    group), and the user's supplementary groups.  With neither option, the
    workers run as the master does: C{None}.

    @raise PrivilegeError: for an unknown user or group.
    """
    if user is None:
        if group is None:
            return None
        gid = _lookupGroup(group)
        return Credentials(os.getuid(), gid, (gid,))
    entry = _lookupUser(user)
    gid = entry.pw_gid if group is None else _lookupGroup(group)
    groups = tuple(os.getgrouplist(entry.pw_name, gid))
    return Credentials(entry.pw_uid, gid, groups)


def checkCanSwitch(credentials: Credentials | None) -> None:
    """
    Fail early when this process could not make its workers run as
    C{credentials}: only root can switch to another user or group.

    @raise PrivilegeError: in one line, saying so.
    """
    if credentials is None or os.geteuid() == 0:
        return
    if credentials.uid != os.geteuid() or credentials.gid != os.getegid():
        raise PrivilegeError(
            "--user/--group need the master to start as root "
            f"(running as uid {os.geteuid()})"
        )


def dropPrivileges(credentials: Credentials) -> None:
    """
    Become C{credentials} for good: supplementary groups, group, then user
    (in that order: once the user is switched, the groups cannot be).  Does
    nothing when this process already runs as them.

    @raise PrivilegeError: when the switch fails or root could be regained.
    """
    uid, gid = credentials.uid, credentials.gid
    if os.geteuid() != 0 and (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) == (
        uid, uid, gid, gid
    ):
        return
    try:
        if os.geteuid() == 0:
            os.setgroups(list(credentials.groups) or [credentials.gid])
        os.setresgid(credentials.gid, credentials.gid, credentials.gid)
        os.setresuid(credentials.uid, credentials.uid, credentials.uid)
    except OSError as e:
        raise PrivilegeError(
            f"cannot switch to uid {credentials.uid} gid {credentials.gid}: {e.strerror}"
        ) from e
    if credentials.uid != 0:
        try:
            os.setuid(0)
        except OSError:
            return
        raise PrivilegeError("root could be regained after switching user")  # pragma: no cover
