"""
Who may use the control site, and the record of who did.

The rule (L{AccessPolicy.decide}) is a pure function of the peer and what
it presented:

  - Over a UNIX socket, the kernel says who connected (C{SO_PEERCRED}): the
    master's own uid and root are let in, any other uid is refused.  The
    socket's mode (0600 by default) already keeps others out; the check
    also covers a socket opened to a group (C{mode=660}) or one that
    systemd passed.
  - Over TCP (or TLS), the peer must present the token that the master
    wrote at start into a file only its user can read (L{TokenFile}), as
    C{Authorization: Bearer TOKEN}.  The status page in a browser gets it
    from the URL's fragment (C{/#token=TOKEN}, which browsers never send to
    the server) and sends it the same way.  No cookie: a cookie for
    C{127.0.0.1} goes to every port of that host, the application's too.
  - C{/healthz}, C{/readyz} and the page's own files are open to everyone:
    load balancers and orchestrators probe without credentials, and they
    tell nothing but whether the master runs and how many workers are
    ready.

The opt-out (C{--control-no-auth}) lets everyone who can connect in, and
is logged as such with every operation.

Nothing here imports the reactor: the refusal log takes a clock, and the
peer's credentials are read by a function tests replace.
"""

from __future__ import annotations

import errno
import hmac
import os
import secrets
import socket
import stat
import struct
from typing import Any, Callable

import attr
from twisted.internet.address import UNIXAddress
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.lockfile import FilesystemLock
from twisted.web.server import Request

from twisted_cluster import logevents
from twisted_cluster._shared.ratelimit import RateLimiter

log = Logger()

#: The scheme of the C{Authorization} header that carries the token.
BEARER = b"bearer"

#: Seconds between two log events about refused requests.
REFUSAL_LOG_INTERVAL = 10.0

#: The longest file L{TokenFile} takes for a token left by a dead master.
_TOKEN_FILE_MAX = 128


class TokenFileError(Exception):
    """
    The token file cannot be created safely; C{str(error)} is one line.
    """


def newToken() -> str:
    """
    A new random token: 256 bits, URL-safe, so that it fits in a header, a
    URL fragment and a shell variable as it is.
    """
    return secrets.token_urlsafe(32)


@attr.s(frozen=True, auto_attribs=True)
class Peer:
    """
    Who sent a request.

    @ivar address: C{HOST:PORT} for TCP, C{"unix"} for a UNIX socket.
    @ivar unix: whether it came over a UNIX socket.
    @ivar uid: the peer process's user id (UNIX sockets only), or C{None}
        when unknown.
    @ivar pid: the peer process's pid (UNIX sockets only), or C{None}.
    """

    address: str
    unix: bool = False
    uid: int | None = None
    pid: int | None = None

    def fields(self) -> dict[str, Any]:
        """
        The peer as log event fields.
        """
        return {"peer": self.address, "peer_uid": self.uid, "peer_pid": self.pid}


def socketCredentials(transport: Any) -> tuple[int, int] | None:
    """
    The (pid, uid) of the process at the other end of a UNIX socket
    transport, from C{SO_PEERCRED}, or C{None} when the kernel does not say.
    """
    handle = getattr(transport, "socket", None)
    option = getattr(socket, "SO_PEERCRED", None)
    if handle is None or option is None:
        return None
    try:
        raw = handle.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, _ = struct.unpack("3i", raw)
    return pid, uid


def requestPeer(
    request: Request,
    credentials: Callable[[Any], tuple[int, int] | None] = socketCredentials,
) -> Peer:
    """
    The L{Peer} of C{request}.

    @param credentials: reads (pid, uid) from a UNIX transport.
    """
    address = request.getClientAddress()
    if not isinstance(address, UNIXAddress):
        host = getattr(address, "host", None)
        if host is None:
            return Peer(type(address).__name__)
        return Peer(f"{host}:{getattr(address, 'port', 0)}")
    found = credentials(request.transport)
    if found is None:
        return Peer("unix", unix=True)
    pid, uid = found
    return Peer("unix", unix=True, uid=uid, pid=pid)


def presentedToken(request: Request) -> str | None:
    """
    The token in C{request}'s C{Authorization: Bearer} header, if any.
    """
    header = request.getHeader(b"authorization")
    if not header:
        return None
    scheme, _, value = header.strip().partition(b" ")
    if scheme.lower() != BEARER or not value.strip():
        return None
    return value.strip().decode("latin-1")


@attr.s(frozen=True, auto_attribs=True)
class Verdict:
    """
    Whether a request may go on.

    @ivar allowed: it may.
    @ivar authenticated: the peer proved who it is (token, or a uid the
        kernel vouches for); C{False} when let in by the opt-out.
    @ivar reason: why, in a few words (never the token).
    """

    allowed: bool
    authenticated: bool
    reason: str


@attr.s(frozen=True, auto_attribs=True)
class AccessPolicy:
    """
    The rule of who may use the control site.

    @ivar token: the token TCP peers must present.
    @ivar ownerUid: the master's uid, let in over UNIX sockets (root too).
    @ivar enforce: C{False} lets everyone in (C{--control-no-auth}).
    """

    token: str
    ownerUid: int
    enforce: bool = True

    def decide(self, peer: Peer, presented: str | None) -> Verdict:
        """
        Whether C{peer}, which presented C{presented} as a token (or
        C{None}), may use the protected part of the site.
        """
        if not self.enforce:
            return Verdict(True, False, "authentication is off")
        if peer.unix:
            if peer.uid is None:
                return Verdict(False, False, "peer credentials unknown")
            if peer.uid in (self.ownerUid, 0):
                return Verdict(True, True, "peer uid")
            return Verdict(False, False, f"uid {peer.uid} is not the master's")
        if presented is None:
            return Verdict(False, False, "no token")
        if not hmac.compare_digest(presented.encode("utf-8"), self.token.encode("ascii")):
            return Verdict(False, False, "wrong token")
        return Verdict(True, True, "token")


def _printable(raw: bytes, limit: int) -> str:
    """
    Client bytes, cut to C{limit} characters, as a string fit for a log
    line: control and other unprintable characters become C{?}.
    """
    text = raw[:limit].decode("latin-1")
    return "".join(c if c.isprintable() else "?" for c in text)


class RefusalLog:
    """
    Logs refused requests, at most one event per C{interval} seconds (a
    flood of bad requests must not flood the log), each with the count of
    refusals not logged since the previous one.
    """

    def __init__(self, clock: IReactorTime, interval: float = REFUSAL_LOG_INTERVAL) -> None:
        self._refusals = RateLimiter(clock, interval)

    def refused(self, peer: Peer, method: bytes, path: bytes, verdict: Verdict) -> None:
        """
        Record one refusal of C{method} C{path} (no query: it may hold a
        token) from C{peer}.
        """
        suppressed = self._refusals.allow()
        if suppressed is None:
            return
        log.warn(
            "control: refused {method} {path} from {peer}: {reason} "
            "({suppressed} more refused since the last such line)",
            cluster_event=logevents.CONTROL_REFUSED,
            method=_printable(method, 10),
            path=_printable(path, 100),
            reason=verdict.reason,
            suppressed=suppressed,
            **peer.fields(),
        )


class Access:
    """
    The control site's gate: applies an L{AccessPolicy} to each request
    and logs the refusals (rate-limited).
    """

    def __init__(
        self,
        policy: AccessPolicy,
        clock: IReactorTime,
        credentials: Callable[[Any], tuple[int, int] | None] = socketCredentials,
    ) -> None:
        """
        @param credentials: reads (pid, uid) from a UNIX socket transport
            (L{socketCredentials}; tests pass another).
        """
        self.policy = policy
        self._credentials = credentials
        self._refusals = RefusalLog(clock)

    def admit(self, request: Request) -> tuple[Peer, Verdict]:
        """
        Who sent C{request} and whether they may go on; a refusal is logged.
        """
        peer = requestPeer(request, self._credentials)
        verdict = self.policy.decide(peer, presentedToken(request))
        if not verdict.allowed:
            self._refusals.refused(peer, request.method, request.path, verdict)
        return peer, verdict


class TokenFile:
    """
    A file that holds the control token, readable by its owner only.

    It is created with C{O_EXCL | O_NOFOLLOW} and mode 0600, so that a
    symlink or a file planted at its path cannot redirect or read it.  A
    lock beside it (C{PATH.lock}, holding the master's pid) tells a token
    left by a killed master, which is replaced, from one in use, which is
    refused.  It is removed at stop only if it is still the file this
    object created: the same inode, holding the same token (an inode
    number is reused as soon as a file is deleted).

    @ivar path: where the token is.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = FilesystemLock(path + ".lock")
        self._created: tuple[int, int, str] | None = None

    def create(self, token: str) -> None:
        """
        Write C{token} to L{path}.

        @raise TokenFileError: when another live master holds the path, or
            something that is not a token file of ours is in the way.
        """
        try:
            locked = self._lock.lock()
        except OSError as e:
            raise TokenFileError(f"cannot lock control token file {self.path}: {e.strerror}") from None
        if not locked:
            raise TokenFileError(
                f"control token file {self.path} belongs to another running master: "
                "pass --control-token"
            )
        try:
            fd = self._open()
            with os.fdopen(fd, "w") as f:
                os.fchmod(fd, 0o600)
                f.write(token + "\n")
                status = os.fstat(fd)
        except BaseException:
            self._lock.unlock()
            raise
        self._created = (status.st_dev, status.st_ino, token)

    def _open(self) -> int:
        """
        Open a new L{path} for writing, replacing a token file that a
        killed master left (we hold the lock, so its master is gone).
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(self.path, flags, 0o600)
        except FileExistsError:
            pass
        except OSError as e:
            raise TokenFileError(f"cannot create control token file {self.path}: {e.strerror}") from None
        if not self._replaceable(os.lstat(self.path)):
            raise TokenFileError(
                f"{self.path} exists and is not a control token file of ours: "
                "remove it or pass another --control-token"
            )
        os.unlink(self.path)
        try:
            return os.open(self.path, flags, 0o600)
        except OSError as e:
            raise TokenFileError(f"cannot create control token file {self.path}: {e.strerror}") from None

    def removeStale(self) -> None:
        """
        Remove L{path} if the master that wrote it is gone (its lock names
        a dead process, and we could take it), and release the lock.
        """
        try:
            if not os.path.islink(self._lock.name) or not self._lock.lock():
                return
        except OSError:
            return
        try:
            if self._replaceable(os.lstat(self.path)):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            self._lock.unlock()

    def _replaceable(self, status: os.stat_result) -> bool:
        """
        Whether a file found at L{path} can be a token file a master of ours
        left: a small regular file of ours, mode 0600.
        """
        return (
            stat.S_ISREG(status.st_mode)
            and status.st_uid == os.getuid()
            and stat.S_IMODE(status.st_mode) == 0o600
            and status.st_size <= _TOKEN_FILE_MAX
        )

    def _holds(self, device: int, inode: int, token: str) -> bool:
        """
        Whether L{path} is still the file holding C{token} that was created
        as inode C{inode} of C{device}.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        with os.fdopen(fd, "rb") as f:
            status = os.fstat(fd)
            text = f.read(_TOKEN_FILE_MAX + 1)
        return (status.st_dev, status.st_ino) == (device, inode) and text.strip() == token.encode()

    def remove(self) -> None:
        """
        Remove L{path} if it is still the file L{create} made; release the
        lock.  Idempotent.
        """
        created, self._created = self._created, None
        if created is None:
            return
        if self._holds(*created):
            try:
                os.unlink(self.path)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    log.warn("cannot remove control token file {path}: {error}",
                             path=self.path, error=e.strerror)
        self._lock.unlock()


#: The shortest token L{loadToken} takes from a file the operator wrote.
MIN_TOKEN_LENGTH = 16


def loadToken(path: str) -> str:
    """
    The token in a file the operator made for the master to use (for
    example one that Prometheus reads too, through its group).  It must be
    a regular file (not a symlink), owned by the master's user or root, that
    no one else may write or, unless through its group, read.

    @raise TokenFileError: when it is not such a file or holds no token of
        at least L{MIN_TOKEN_LENGTH} characters.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise TokenFileError(f"cannot read control token file {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        status = os.fstat(fd)
        text = f.read(_TOKEN_FILE_MAX + 1)
    if (
        not stat.S_ISREG(status.st_mode)
        or status.st_uid not in (os.getuid(), 0)
        or status.st_mode & 0o027
    ):
        raise TokenFileError(
            f"control token file {path} must be a regular file of this user or root, "
            "that no one else may write and others may not read (e.g. mode 0600 or 0640)"
        )
    token = text.decode("ascii", "replace").strip()
    if len(text) > _TOKEN_FILE_MAX or len(token) < MIN_TOKEN_LENGTH or any(
        c.isspace() or not c.isprintable() for c in token
    ):
        raise TokenFileError(
            f"control token file {path} must hold one token of {MIN_TOKEN_LENGTH} to "
            f"{_TOKEN_FILE_MAX} printable characters"
        )
    return token


def readToken(path: str) -> str:
    """
    The token in the file at C{path}, for clients (L{twisted_cluster.ctl}).

    @raise OSError: when it cannot be read.
    @raise ValueError: when it holds no token.
    """
    with open(path, "rb") as f:
        text = f.read(_TOKEN_FILE_MAX + 1)
    token = text.decode("ascii", "replace").strip()
    if not token or len(text) > _TOKEN_FILE_MAX or any(c.isspace() for c in token):
        raise ValueError(f"{path} holds no control token")
    return token
