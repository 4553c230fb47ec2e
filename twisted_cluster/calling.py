"""
Calling AMP commands on the control channel, safely.

The control channel carries the cluster's own commands (health pings,
drains) next to the application's.  Plain AMP is unforgiving there: a value
over 65,535 bytes raises in the middle of C{callRemote}, an answer that is
too long or a responder that raises an undeclared exception closes the
connection (and a worker whose channel closes exits).  This module keeps
the application's mistakes on the application's side:

  - L{checkCommand} refuses at once, in the caller's frame, what is no
    command or cannot be called through this API;
  - L{callCommand} checks sizes before anything is sent, turns error codes
    into the command's typed exceptions (and the cluster's own, see
    L{twisted_cluster.errors}), and applies a timeout (L{CallTimedOut},
    naming the command and its target) whose late answer is dropped
    harmlessly;
  - L{AppResponders} looks up the application's responders and answers an
    undeclared exception, a "fatal" error or a too long answer with an
    ordinary AMP error instead of closing the channel.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from twisted_cluster import logevents
from twisted_cluster.arguments import MAX_VALUE_LENGTH, BigBytes
from twisted_cluster.errors import ERROR_CODES, CallTimedOut, ValueTooLong

log = Logger()

#: The timeout of calls from the master to workers, in seconds, unless the
#: caller gives one.  A hung worker must not hang its caller.
DEFAULT_TIMEOUT = 30.0

_CLUSTER_ERRORS = {code: kind for kind, code in ERROR_CODES.items()}


#: The keyword arguments of the call methods themselves: a command argument
#: of that name could not be passed (L{checkCommand}).
RESERVED_ARGUMENTS = frozenset({"timeout"})


def _isList(argument: amp.Argument) -> bool:
    return isinstance(argument, (amp.ListOf, amp.AmpList))


def checkCommand(command: object, method: str) -> None:
    """
    Refuse, at once and in the caller's frame, a call that could not work:
    C{command} is not an L{amp.Command} subclass, or declares an argument
    that the call method takes for itself (C{timeout}).

    @param method: the method called, to name in the message.
    @raise TypeError: with what to do.
    """
    if not (isinstance(command, type) and issubclass(command, amp.Command)):
        raise TypeError(
            f"{method}() needs an amp.Command subclass, not {command!r}"
        )
    for name, _ in command.arguments:
        identifier = name.decode("ascii", "replace")
        if identifier in RESERVED_ARGUMENTS:
            raise TypeError(
                f"{command.__name__} declares an argument named {identifier!r}, "
                f"which {method}() takes for itself (seconds to wait for the "
                f"answer): rename the argument"
            )


def _checkLists(command: type[amp.Command]) -> None:
    """
    @raise TypeError: when a list argument of C{command} holds
        L{BigBytes}: AMP sends a list as one value, which cannot be chunked.
    """
    for name, argument in command.arguments:
        inner = [getattr(argument, "elementType", None)]
        inner += [kind for _, kind in getattr(argument, "subargs", ())]
        big = [kind for kind in inner if isinstance(kind, BigBytes)]
        if big:
            raise TypeError(
                f"argument {name.decode('ascii', 'replace')!r} of {command.__name__} "
                f"is a {type(argument).__name__} of {type(big[0]).__name__}(): AMP "
                "sends a whole list as "
                "one value of at most 65,535 bytes, so its items cannot be sent "
                "in chunks; send the list as one BigBytes() or BigUnicode() "
                "argument (as JSON, for example), or one item per call"
            )


def _tooLong(box: amp.AmpBox) -> tuple[str, int] | None:
    """
    The name and length of the first value of C{box} that AMP could not
    send, or C{None} when every value fits.
    """
    for key, value in box.items():
        if len(value) > MAX_VALUE_LENGTH:
            return key.decode("ascii", "replace"), len(value)
    return None


def encodeArguments(
    command: type[amp.Command], arguments: dict[str, Any], connection: amp.AMP
) -> amp.AmpBox:
    """
    The box that carries C{command} with C{arguments}, checked for size.

    @raise amp.InvalidSignature: when an argument is missing or unknown.
    @raise ValueTooLong: when a value is too long for AMP.
    """
    _checkLists(command)
    command(**arguments)  # Checks that no required argument is missing.
    box = command.makeArguments(arguments, connection)
    found = _tooLong(box)
    if found is not None:
        key, length = found
        declared = dict(command.arguments)
        if _isList(declared.get(key.encode("ascii", "replace"), amp.Argument())):
            advice = (
                "it is a list, which AMP sends as one value: send fewer items "
                "per call, or the whole list as one twisted_cluster.BigBytes() "
                "or BigUnicode() argument (as JSON, for example)"
            )
        else:
            advice = (
                "declare it twisted_cluster.BigBytes() or BigUnicode() to send "
                "it in chunks"
            )
        raise ValueTooLong(
            f"argument {key!r} of {command.__name__} is {length} bytes; AMP "
            f"carries at most {MAX_VALUE_LENGTH} bytes per value: {advice}"
        )
    return box


def packBox(box: amp.AmpBox) -> bytes:
    """
    A box as bytes, to travel inside another command.
    """
    return box.serialize()


def unpackBox(data: bytes) -> amp.AmpBox:
    """
    The box that L{packBox} made.
    """
    return amp.parseString(data)[0]


def sendBox(
    connection: amp.AMP, name: bytes, box: amp.AmpBox, requiresAnswer: bool = True
) -> Deferred[amp.AmpBox] | None:
    """
    Send an already encoded command; fire with the raw answer box.

    AMP's public C{callRemoteString} takes the box as keyword arguments,
    which breaks on an argument called C{command} or C{requiresAnswer}; the
    method it wraps takes the box as it is.
    """
    return connection._sendBoxCommand(name, box, requiresAnswer)


def _typedError(failure: Failure, errors: dict[bytes, type[Exception]]) -> Failure:
    """
    Turn an AMP error answer into the exception its code stands for: one of
    C{errors}, one of the cluster's errors, or L{amp.UnknownRemoteError}.
    Other failures (a lost connection) pass unchanged.
    """
    if not failure.check(amp.RemoteAmpError) or failure.check(amp.UnknownRemoteError):
        return failure
    code = failure.value.errorCode
    description = failure.value.description
    kind = errors.get(code) or _CLUSTER_ERRORS.get(code)
    if kind is None:
        return Failure(amp.UnknownRemoteError(description))
    return Failure(kind(description))


def withTimeout(
    d: Deferred[Any],
    clock: IReactorTime | None,
    timeout: float | None,
    what: str = "the call",
) -> Deferred[Any]:
    """
    A Deferred with the result of C{d}, or a L{CallTimedOut} after
    C{timeout} seconds.

    @param what: the call, as the error names it (C{"Publish to worker 2"}).

    The answer to an AMP call that timed out may still arrive: it lands on
    C{d}, which this function has already consumed, so that it neither
    fires twice nor reaches AMP's last-resort handler (which would close the
    control channel).
    """
    out: Deferred[Any] = Deferred()

    def forward(result: Any) -> None:
        if not out.called:
            out.callback(result)

    d.addBoth(forward)
    if timeout is not None and clock is not None and not out.called:

        def timedOut(result: Any, after: float) -> Failure:
            return Failure(CallTimedOut(f"{what} got no answer within {after:g}s"))

        out.addTimeout(timeout, clock, onTimeoutCancel=timedOut)
    return out


def callCommand(
    connection: amp.AMP,
    command: type[amp.Command],
    arguments: dict[str, Any],
    clock: IReactorTime | None = None,
    timeout: float | None = None,
    errors: dict[bytes, type[Exception]] | None = None,
    what: str | None = None,
) -> Deferred[Any]:
    """
    Call C{command} on C{connection} and fire with its parsed answer.

    @param errors: more error codes to map to exceptions (for a relayed
        command, the inner command's).
    @param what: the call as a time-out names it (default: the command).
    @return: a Deferred that fails with the command's declared errors,
        L{ValueTooLong} (nothing was sent), L{amp.InvalidSignature},
        L{CallTimedOut}, or the connection's loss.
    """
    try:
        box = encodeArguments(command, arguments, connection)
    except Exception:
        return fail()
    sent = sendBox(connection, command.commandName, box, command.requiresAnswer)
    if sent is None:
        return succeed(None)
    known = dict(command.reverseErrors)  # type: ignore[attr-defined]
    known.update(errors or {})
    sent.addCallback(command.parseResponse, connection)
    sent.addErrback(_typedError, known)
    return withTimeout(sent, clock, timeout, what or command.__name__)


class AppResponders:
    """
    The application's responders on one end of the control channel: the
    first of C{locators} that knows a command answers it, guarded so that
    no mistake of the application closes the channel.

    @ivar locators: the L{amp.IResponderLocator}s asked, in order.
    """

    def __init__(self, *locators: Any) -> None:
        self.locators = [locator for locator in locators if locator is not None]

    def locateResponder(self, name: bytes) -> Any:
        for locator in self.locators:
            responder = locator.locateResponder(name)
            if responder is not None:
                return self._guard(name, responder)
        return None

    def _guard(self, name: bytes, responder: Any) -> Any:
        def guarded(box: amp.AmpBox) -> Deferred[amp.AmpBox]:
            d = maybeDeferred(responder, box)
            d.addCallbacks(
                _checkAnswer, _plainError, callbackArgs=(name,), errbackArgs=(name,)
            )
            return d

        return guarded


def _checkAnswer(answer: amp.AmpBox, name: bytes) -> amp.AmpBox:
    """
    Pass C{answer} on, or answer L{ValueTooLong} when AMP could not send
    it (AMP itself would close the channel).
    """
    found = _tooLong(answer)
    if found is None:
        return answer
    key, length = found
    command = name.decode("ascii", "replace")
    message = (
        f"answer {key!r} of {command} is {length} bytes; AMP carries at most "
        f"{MAX_VALUE_LENGTH} bytes per value: declare it "
        "twisted_cluster.BigBytes() or BigUnicode()"
    )
    log.error("responder {command} failed: {message}",
              cluster_event=logevents.RESPONDER_FAILED, command=command, message=message)
    raise amp.RemoteAmpError(ERROR_CODES[ValueTooLong], message)


def _plainError(failure: Failure, name: bytes) -> Failure:
    """
    Pass a declared error on; turn a "fatal" one or an undeclared exception
    into an ordinary AMP error, which leaves the channel open.
    """
    if failure.check(amp.RemoteAmpError):
        error = failure.value
        if not error.fatal:
            return failure
        # A "fatal" error would close the channel the cluster runs on.
        return Failure(amp.RemoteAmpError(error.errorCode, error.description))
    log.failure(
        "responder {command} raised an undeclared exception",
        failure,
        cluster_event=logevents.RESPONDER_RAISED,
        command=name.decode("ascii", "replace"),
    )
    return Failure(
        amp.RemoteAmpError(
            amp.UNKNOWN_ERROR_CODE,
            f"{failure.type.__name__}: {failure.value}",
            local=failure,
        )
    )
