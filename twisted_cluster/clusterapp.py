"""
L{ClusterApp}: an application together with its own AMP responders.
"""

from __future__ import annotations

from typing import Any, Callable, Union

import attr
from twisted.protocols.amp import IResponderLocator

#: Responders: an L{IResponderLocator} (an L{amp.CommandLocator} instance),
#: or a callable that takes the context (an C{IWorkerContext} in a worker, an
#: C{IMasterContext} in the master) and returns one, such as a
#: L{amp.CommandLocator} subclass whose constructor takes the context.
Responders = Union[IResponderLocator, Callable[[Any], Any], None]


@attr.s(frozen=True, auto_attribs=True, kw_only=True)
class ClusterApp:
    """
    What C{--app} names when the application brings its own AMP commands.

    @ivar app: what C{--app} would name otherwise: an C{IResource}, an
        C{IProtocolFactory}, or a callable returning one (a callable that
        takes one argument receives the worker's C{IWorkerContext}).
    @ivar workerResponders: the responders of each worker, for the commands
        the master (or another worker) calls on it.  Built once per worker,
        after C{app}, so that they can reach it as C{context.app}.
    @ivar masterResponders: the responders of the master, for the commands
        workers call on it.  Built once, in the master.
    @ivar metricsRegistry: the C{prometheus_client} registry (anything with
        C{collect()}) whose series each worker publishes on the master's
        C{/metrics}; by default, C{prometheus_client}'s default registry
        once the app imports C{prometheus_client} (docs/observability.md).
    @ivar statusSeries: up to 4 sample names of that registry (such as
        C{"shop_requests_total"}) whose values, summed over their labels,
        each worker's row on the master's status page shows.
    """

    app: Any
    workerResponders: Responders = None
    masterResponders: Responders = None
    metricsRegistry: Any = None
    statusSeries: tuple[str, ...] = attr.ib(default=(), converter=tuple)


def makeLocator(responders: Responders, context: Any) -> Any:
    """
    The responder locator that C{responders} stands for, in C{context}.

    @raise TypeError: when C{responders} is, or makes, no locator.
    """
    if responders is None or IResponderLocator.providedBy(responders):
        return responders
    if callable(responders):
        locator = responders(context)
        if IResponderLocator.providedBy(locator):
            return locator
        raise TypeError(
            f"{responders!r} returned {type(locator).__name__}, not an "
            "amp.CommandLocator"
        )
    raise TypeError(
        f"responders must be an amp.CommandLocator or a callable returning "
        f"one, not {type(responders).__name__}"
    )
