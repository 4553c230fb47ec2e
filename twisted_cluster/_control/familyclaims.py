"""
Which family owns each name of the app's exposition.

A Prometheus exposition has one family per name: a counter C{dup} shows
C{dup_total}, so a gauge C{dup_total} beside it would give two C{# TYPE
dup_total} blocks, and Prometheus refuses the whole scrape.  L{FamilyClaims}
counts, for every name a family may take (its own and those of its
samples, L{SUFFIXES}), which family (name and type) has it and how many
holders have that family, so that L{twisted_cluster._control.appseries}
admits a family only when its names are free or already its own.
"""

from __future__ import annotations

from twisted_cluster._contract.metricsnapshot import SUFFIXES, Family

#: A family as the exposition tells it apart: its name and its type.
_Identity = tuple[str, str]


def _names(family: Family) -> set[str]:
    """
    Every name C{family} may take in the exposition: its own and those its
    samples may take (L{SUFFIXES}).
    """
    return {family.name + suffix for suffix in SUFFIXES[family.type]} | {family.name}


class FamilyClaims:
    """
    Which family owns each name of the exposition, and how many holders
    (live processes, slots of gone ones) have it.
    """

    def __init__(self) -> None:
        self._owners: dict[str, tuple[_Identity, int]] = {}

    def admits(self, family: Family) -> bool:
        """
        Whether no name C{family} may take belongs to another family.
        """
        identity = (family.name, family.type)
        return all(
            self._owners.get(name, (identity, 0))[0] == identity for name in _names(family)
        )

    def hold(self, family: Family) -> None:
        """
        One more holder (a live process, a slot of gone ones) has C{family}.
        """
        identity = (family.name, family.type)
        for name in _names(family):
            count = self._owners.get(name, (identity, 0))[1]
            self._owners[name] = (identity, count + 1)

    def release(self, family: Family) -> None:
        """
        A holder of C{family} (which it held) no longer has it.
        """
        for name in _names(family):
            identity, count = self._owners[name]
            if count > 1:
                self._owners[name] = (identity, count - 1)
            else:
                del self._owners[name]
