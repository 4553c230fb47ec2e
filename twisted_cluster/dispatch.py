"""
Dispatch policies: which ready worker gets the next accepted connection.

A policy sees the workers as opaque keys (the master uses worker ids) and
only answers "who is next"; the master keeps the bookkeeping of who is
ready.  Policies are pure objects, tested without processes.
"""

from __future__ import annotations

from typing import Hashable, Sequence

from zope.interface import Interface, implementer


class NoWorkerReady(Exception):
    """
    No worker can take a connection right now.
    """


class IDispatchPolicy(Interface):
    """
    Chooses the worker for each accepted connection.
    """

    def choose(ready: Sequence[Hashable], peer: object) -> Hashable:
        """
        Pick one of C{ready} (never empty) for the next connection.

        @param peer: the client's address as C{accept()} returned it.
        """


@implementer(IDispatchPolicy)
class RoundRobin:
    """
    Each ready worker in turn, in the order of C{ready}: over any run of
    C{k * len(ready)} connections every worker gets exactly C{k}.

    Workers joining or leaving the ready list keep the rotation fair: the
    cursor remembers the last worker chosen, not a position.
    """

    def __init__(self) -> None:
        self._last: Hashable | None = None

    def choose(self, ready: Sequence[Hashable], peer: object = None) -> Hashable:
        if not ready:
            raise NoWorkerReady()
        last = self._last
        chosen = ready[0]
        if last is not None:
            for i, key in enumerate(ready):
                if key == last:
                    chosen = ready[(i + 1) % len(ready)]
                    break
            else:
                # The last worker left: continue with the first one after it.
                later = [key for key in ready if _after(key, last)]
                chosen = later[0] if later else ready[0]
        self._last = chosen
        return chosen


def _after(key: Hashable, last: Hashable) -> bool:
    try:
        return key > last  # type: ignore[operator]
    except TypeError:
        return False
