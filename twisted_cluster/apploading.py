"""
Turn the C{--app} dotted name into the protocol factory a worker serves.

C{--app} names an object the way gunicorn and twistd users expect:
C{package.module.attribute} or C{package.module:attribute}.  The object may
be an L{IResource} (served with L{twisted.web.server.Site}), an
L{IProtocolFactory}, or a callable that returns either (a class, a factory
function).  Modules in the current directory are importable, because the
worker puts its working directory first on C{sys.path}.
"""

from __future__ import annotations

import importlib
import inspect
import re
import traceback
from typing import Any, Callable

from twisted.internet.interfaces import IProtocolFactory
from twisted.web.resource import IResource
from twisted.web.server import Site

from twisted_cluster.clusterapp import ClusterApp, makeLocator, makeProvider


class AppLoadError(Exception):
    """
    The app named by C{--app} cannot be served.  C{str(error)} is one line
    that says why, fit to show a user; C{details} holds the traceback of the
    user's code, when there was one.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def _importLongestModule(name: str) -> tuple[Any, list[str]]:
    """
    Import the longest importable module prefix of C{name}.

    @return: the module and the attribute path that remains after it.
    @raise AppLoadError: when no prefix is a module, or when importing the
        module raised (the user's error is kept in C{details}).
    """
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        moduleName = ".".join(parts[:cut])
        try:
            return importlib.import_module(moduleName), parts[cut:]
        except ModuleNotFoundError as e:
            # Only "this very module does not exist" means: try a shorter
            # prefix.  A missing import *inside* the module is the user's bug.
            if e.name is None or not _isPrefix(e.name, moduleName):
                raise _fromUserCode(name, e) from e
        except Exception as e:
            raise _fromUserCode(name, e) from e
    raise AppLoadError(f"cannot load app {name!r}: no module named {parts[0]!r}")


def _isPrefix(missing: str, moduleName: str) -> bool:
    return moduleName == missing or moduleName.startswith(missing + ".")


def _fromUserCode(name: str, e: BaseException) -> AppLoadError:
    return AppLoadError(
        f"cannot load app {name!r}: {type(e).__name__}: {e}",
        _userTraceback(e),
    )


def _isMachinery(filename: str) -> bool:
    """
    Whether a traceback frame in C{filename} is the import system's or this
    module's rather than the user's.
    """
    return filename.startswith("<frozen") or filename in (__file__, importlib.__file__)


def _userTraceback(e: BaseException) -> str:
    """
    The traceback of C{e} (and of the exceptions it chains) with only the
    user's frames: an import error otherwise shows a dozen frames of
    C{<frozen importlib._bootstrap>} that hide the one line that matters.
    """
    report = traceback.TracebackException.from_exception(e)
    pending = [report]
    while pending:
        part = pending.pop()
        part.stack = traceback.StackSummary.from_list(
            [frame for frame in part.stack if not _isMachinery(frame.filename)]
        )
        pending.extend(
            chained for chained in (part.__cause__, part.__context__)
            if chained is not None
        )
    return "".join(report.format())


def resolveName(name: str) -> Any:
    """
    Find the object called C{name}.

    @param name: C{module.attr} or C{module:attr} (C{attr} may be dotted).
    @raise AppLoadError: when the module or the attribute is missing.
    """
    if not name or name.startswith((".", ":")) or name.endswith((".", ":")):
        raise AppLoadError(f"cannot load app {name!r}: not a dotted name")
    if ":" in name:
        moduleName, _, attrPath = name.partition(":")
        try:
            obj = importlib.import_module(moduleName)
        except ModuleNotFoundError as e:
            if e.name is not None and _isPrefix(e.name, moduleName):
                raise AppLoadError(
                    f"cannot load app {name!r}: no module named {e.name!r}"
                ) from e
            raise _fromUserCode(name, e) from e
        except Exception as e:
            raise _fromUserCode(name, e) from e
        attrs = attrPath.split(".")
    else:
        obj, attrs = _importLongestModule(name)
        if not attrs:
            raise AppLoadError(
                f"cannot load app {name!r}: that is a module; name the resource "
                f"or factory in it, e.g. {name}.resource"
            )
    for attr in attrs:
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise AppLoadError(
                f"cannot load app {name!r}: {getattr(obj, '__name__', obj)!r} "
                f"has no attribute {attr!r}"
            ) from None
    return obj


def quietSite(resource: IResource) -> Site:
    """
    A L{Site} for C{resource} without an access log line per request: at
    thousands of requests a second, every worker's lines would flow through
    the master's log (gunicorn, too, leaves the access log off by default).
    """
    site = Site(resource)
    site.log = lambda request: None  # type: ignore[method-assign]
    return site


def _notAnApp(obj: Any, name: str) -> AppLoadError:
    return AppLoadError(
        f"cannot load app {name!r}: {type(obj).__name__} object is not an "
        "IResource, an IProtocolFactory, or a callable returning one"
    )


def _wantsContext(call: Callable[..., Any]) -> bool:
    """
    Whether C{call} takes one required positional argument (the worker's
    context) rather than none.
    """
    try:
        parameters = inspect.signature(call).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.default is p.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in parameters
    )


def buildApp(obj: Any, name: str = "app", context: Any = None) -> Any:
    """
    The resource or protocol factory that C{obj} is or makes.

    @param obj: an L{IResource}, an L{IProtocolFactory}, a callable that
        returns one of them (a callable that takes one argument is given
        C{context}: in a worker, its L{twisted_cluster.IWorkerContext}), or a
        L{ClusterApp} whose C{app} is one of those.
    @raise AppLoadError: when C{obj} is none of those.
    """
    if isinstance(obj, ClusterApp):
        obj = obj.app
    if _isServable(obj):
        return obj
    if not callable(obj):
        raise _notAnApp(obj, name)
    call: Callable[..., Any] = obj
    try:
        built = call(context) if _wantsContext(call) else call()
    except Exception as e:
        raise _fromUserCode(name, e) from e
    if isinstance(built, ClusterApp):
        raise AppLoadError(
            f"cannot load app {name!r}: it returned a ClusterApp; name "
            "the ClusterApp itself (the master needs its responders)"
        )
    if not _isServable(built):
        # Name what the call returned: the user's callable is fine, its
        # result is not.
        raise AppLoadError(
            f"cannot load app {name!r}: it returned {type(built).__name__} "
            "object, not an IResource or an IProtocolFactory"
        )
    return built


def _isServable(obj: Any) -> bool:
    return IResource.providedBy(obj) or IProtocolFactory.providedBy(obj)


def asFactory(obj: Any, name: str = "app", context: Any = None) -> IProtocolFactory:
    """
    Adapt what C{--app} names to the factory a worker serves.

    @param obj: what L{buildApp} accepts.
    @raise AppLoadError: when C{obj} is not an app.
    """
    return _served(buildApp(obj, name, context))


def _served(built: Any) -> IProtocolFactory:
    """
    The protocol factory that serves C{built}: a quiet L{Site} for a
    resource, a protocol factory as it is.
    """
    return quietSite(built) if IResource.providedBy(built) else built


def buildWorkerApp(obj: Any, name: str, context: Any) -> tuple[IProtocolFactory, Any]:
    """
    Everything a worker serves for C{obj}: the protocol factory of its app
    and, for a L{ClusterApp}, the locator of its worker-side responders
    (built after the app, which they find as C{context.app}).

    @return: the factory, and the responder locator or C{None}.
    @raise AppLoadError: when C{obj} is not an app or its code raised.
    """
    built = buildApp(obj, name, context)
    context.app = built
    factory = _served(built)
    if not isinstance(obj, ClusterApp):
        return factory, None
    try:
        return factory, makeLocator(obj.workerResponders, context)
    except Exception as e:
        raise _fromUserCode(name, e) from e


def buildWorkerHooks(obj: Any, name: str, context: Any) -> list[Any]:
    """
    The L{twisted_cluster.IWorkerHooks} of a worker's app, once it is built
    (L{buildWorkerApp}): the built app itself when it provides them, then
    what a L{ClusterApp}'s C{workerHooks} stands for.

    @raise AppLoadError: when C{workerHooks} is, or makes, no provider.
    """
    from twisted_cluster.lifecycle import IWorkerHooks

    hooks = [context.app] if IWorkerHooks.providedBy(context.app) else []
    if isinstance(obj, ClusterApp) and obj.workerHooks is not None:
        try:
            hooks.append(makeProvider(obj.workerHooks, context, IWorkerHooks))
        except Exception as e:
            raise _fromUserCode(name, e) from e
    return hooks


def checkApp(obj: Any, name: str) -> None:
    """
    Check, without calling anything, that C{obj} can be what C{--app}
    names.  The master runs this so that a wrong name fails at once, before
    any worker starts.

    @raise AppLoadError: when C{obj} is not an app.
    """
    if isinstance(obj, ClusterApp):
        checkApp(obj.app, name)
        metricsOptions(obj, name)
        return
    if IResource.providedBy(obj) or IProtocolFactory.providedBy(obj) or callable(obj):
        return
    raise _notAnApp(obj, name)


def loadApp(name: str, context: Any = None) -> IProtocolFactory:
    """
    Resolve C{name} and adapt it to a protocol factory.

    @raise AppLoadError: with one line that says what is wrong.
    """
    return asFactory(resolveName(name), name, context)


#: The most sample names L{ClusterApp.statusSeries} may name.
MAX_STATUS_SERIES = 4


def metricsOptions(obj: Any, name: str) -> tuple[Any, tuple[str, ...]]:
    """
    The metrics registry that C{obj} names (L{ClusterApp.metricsRegistry},
    C{None} for the default) and the sample names it wants on the status
    page (L{ClusterApp.statusSeries}).

    @raise AppLoadError: when the registry has no C{collect()}, or the
        names are too many or not metric names.
    """
    if not isinstance(obj, ClusterApp):
        return None, ()
    registry, status = obj.metricsRegistry, obj.statusSeries
    if registry is not None and not callable(getattr(registry, "collect", None)):
        raise AppLoadError(
            f"cannot load app {name!r}: its metricsRegistry is a "
            f"{type(registry).__name__}, not a prometheus_client registry "
            "(nothing with collect())"
        )
    if len(status) > MAX_STATUS_SERIES or not all(
        isinstance(s, str) and re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s) for s in status
    ):
        raise AppLoadError(
            f"cannot load app {name!r}: its statusSeries must be at most "
            f"{MAX_STATUS_SERIES} sample names, such as 'app_requests_total'"
        )
    return registry, status
