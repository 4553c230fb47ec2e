"""
A bound on what the control site may cost the master.

The master's reactor both hands connections to workers and serves the
control site.  A client scraping C{/metrics} (or anything else) thousands
of times a second would take that reactor from serving.  So the control
site runs under a budget:

  - L{RequestBudget}: a token bucket of reads per second, shared by every
    control connection.  A connection whose read finds the bucket empty is
    paused (its bytes wait in the kernel) until a unit is back, so a
    flood costs the master a bounded number of requests per second
    whatever the client does.
  - L{BudgetedFactory}: at most C{maxConnections} control connections at
    once; more are closed at once (idle connections cost descriptors).

The budget is far above what people and monitoring use (a Prometheus
scrape every 15 s, the status page once a second, probes every few
seconds).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocol, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

#: Control site reads (about one per request) per second, on average.
RATE = 200.0

#: Reads that may come at once after a quiet time.
BURST = 200

#: Control connections open at once.
MAX_CONNECTIONS = 64

#: Bytes a paused connection may hold before it is closed (a client that
#: pipelines without reading its answers).
_MAX_HELD = 65536


class RequestBudget:
    """
    A token bucket on a clock: C{rate} units a second, at most C{burst}
    saved up.
    """

    def __init__(self, clock: IReactorTime, rate: float = RATE, burst: int = BURST) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = float(burst)
        self._level = float(burst)
        self._at = clock.seconds()

    def take(self) -> float:
        """
        Take one unit: C{0} when there was one, else the seconds until one
        is back (nothing is taken then).
        """
        now = self._clock.seconds()
        self._level = min(self._burst, self._level + (now - self._at) * self._rate)
        self._at = now
        if self._level >= 1:
            self._level -= 1
            return 0.0
        return (1 - self._level) / self._rate


class _BudgetedProtocol(ProtocolWrapper):
    """
    Passes reads on while the budget allows; otherwise pauses its
    transport and holds what it read until the budget has a unit again.
    """

    factory: "BudgetedFactory"
    # The connection's own transport (TCP, UNIX or TLS), which can pause.
    transport: Any

    def __init__(self, factory: "BudgetedFactory", wrappedProtocol: IProtocol) -> None:
        super().__init__(factory, wrappedProtocol)
        self._held: list[bytes] | None = None
        self._heldSize = 0
        self._resume: IDelayedCall | None = None

    def dataReceived(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
            self._heldSize += len(data)
            if self._heldSize > _MAX_HELD:
                self.transport.abortConnection()
            return
        wait = self.factory.budget.take()
        if not wait:
            super().dataReceived(data)
            return
        self._held, self._heldSize = [data], len(data)
        self.transport.pauseProducing()
        self._resume = self.factory.clock.callLater(wait, self._release)

    def _release(self) -> None:
        self._resume = None
        held, self._held = self._held or [], None
        self.transport.resumeProducing()
        self.dataReceived(b"".join(held))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        self._held = None
        super().connectionLost(reason)


class BudgetedFactory(WrappingFactory["_BudgetedProtocol"]):
    """
    Wraps the control site's factory: its connections share one
    L{RequestBudget}, and at most C{maxConnections} are open at once.
    """

    protocol = _BudgetedProtocol

    def __init__(
        self,
        wrappedFactory: Any,
        clock: IReactorTime,
        budget: RequestBudget | None = None,
        maxConnections: int = MAX_CONNECTIONS,
    ) -> None:
        super().__init__(wrappedFactory)
        self.clock = clock
        self.budget = budget if budget is not None else RequestBudget(clock)
        self.maxConnections = maxConnections

    def buildProtocol(self, addr: IAddress | None) -> Any:
        if len(self.protocols) >= self.maxConnections:
            return None
        return super().buildProtocol(addr)
