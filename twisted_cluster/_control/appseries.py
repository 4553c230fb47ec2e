"""
The application's own metrics for the whole cluster: every worker's
families merged into one view, with what gone workers counted kept.

L{AppSeries} is pure: it is told each worker process's latest snapshot
(L{update}), which processes did not answer this scrape (L{stale}) and
which are gone (L{retire}), and renders Prometheus families
(L{AppSeries.collect}).  The rules (docs/observability.md, "Application
metrics"):

  - I{Counting} samples (a counter's C{_total}; a histogram's C{_bucket},
    C{_count}, C{_sum}; a summary's C{_count} and C{_sum}) belong to a
    worker I{slot}: label C{worker="ID"}, the sum of what the slot's live
    processes report and of what its gone processes had counted.  A
    replacement in the same slot (a crash, a roll-out, recycling) so
    continues its predecessor's series instead of resetting it.  They are
    also summed over every slot, including removed ones, under
    C{worker="all"}: the cluster total, which never goes backwards.
  - Every other sample (gauges, infos, state sets, untyped series, gauge
    histograms, a summary's quantiles) belongs to a live process: labels
    C{worker="ID", pid="PID"}, gone with the process, never aggregated (a
    sum of temperatures or of quantiles means nothing; PromQL's C{sum},
    C{max} or C{min} over live processes is one query away).
  - A process that did not answer this scrape is I{stale}: its series are
    left out of this scrape (Prometheus marks absent series stale), those
    of its slot too, while C{worker="all"} keeps counting its last known
    values.
  - A label of the app named C{worker} or C{pid} is renamed
    C{exported_worker} / C{exported_pid}, as Prometheus does with clashing
    target labels.  Families whose name the master exposes itself are
    left out (L{reserved}).
  - Every name in the exposition has one family: a family whose name, or
    one of the names its samples may take (a counter C{dup} shows
    C{dup_total}), is already held by a family of another name or type (a
    gauge C{dup_total}, a gauge C{dup}), in any worker process or in what
    gone ones left, is dropped (L{AppSeries.update} says which): the first
    one held keeps it (L{FamilyClaims}).  Two families for one name would
    make Prometheus refuse the whole scrape.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import attr
from prometheus_client.core import Metric

from twisted_cluster._contract.metricsnapshot import MAX_SAMPLES, Family
from twisted_cluster._control.familyclaims import FamilyClaims

#: A worker process: its slot (worker id) and its pid.
Key = tuple[int, int]

#: The labels of one sample, sorted, and the sample's name.
_SampleKey = tuple[str, tuple[tuple[str, str], ...]]

#: The C{worker} label of the cluster-wide sums.
ALL = "all"

#: Labels the master adds, and what a clashing label of the app becomes.
_RENAMED = {"worker": "exported_worker", "pid": "exported_pid"}

#: The suffixes of the samples that count, by family type.
_COUNTING = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}


def counting(kind: str, family: str, sample: str) -> bool:
    """
    Whether sample C{sample} of family C{family}, of type C{kind}, counts
    (only grows in a process's life, so that a gone process's last value
    is kept and slots are summed).
    """
    return any(sample == family + suffix for suffix in _COUNTING.get(kind, ()))


def masterReserved(name: str) -> bool:
    """
    Whether a family name is one the master exposes itself: its own
    C{twisted_cluster_*} series and its process's C{process_*} ones.
    """
    return name.startswith(("twisted_cluster_", "process_"))


def _relabel(labels: tuple[tuple[str, str], ...]) -> dict[str, str] | None:
    """
    The app's labels with C{worker} and C{pid} renamed, or C{None} when the
    renamed label is taken too.
    """
    out = dict(labels)
    for ours, theirs in _RENAMED.items():
        if ours in out:
            if theirs in out:
                return None
            out[theirs] = out.pop(ours)
    return out


def _latest(last: list[Family], final: list[Family]) -> list[Family]:
    """
    A process's final families, each counting sample at least what the
    last scrape read (a final snapshot sent early, by a worker that is not
    ours, must not make a count go backwards), and the families only the
    last scrape had.
    """
    before = {
        (family.name, sample.name, sample.labels): sample.value
        for family in last for sample in family.samples
        if counting(family.type, family.name, sample.name)
    }
    merged = [
        attr.evolve(family, samples=tuple(
            attr.evolve(sample, value=max(
                sample.value, before.get((family.name, sample.name, sample.labels), sample.value)))
            for sample in family.samples
        ))
        for family in final
    ]
    names = {family.name for family in final}
    return merged + [family for family in last if family.name not in names]


class _Totals:
    """
    What the gone processes of one slot had counted, by family.

    @ivar kinds: family name -> (type, help).
    @ivar values: family name -> sample key -> value.
    """

    def __init__(self) -> None:
        self.kinds: dict[str, tuple[str, str]] = {}
        self.values: dict[str, dict[_SampleKey, float]] = {}
        self.size = 0

    def add(self, families: Iterable[Family], limit: int, claims: FamilyClaims) -> None:
        """
        Add what C{families} counted, at most C{limit} samples in all;
        a family new to the slot holds its names in C{claims} for good.
        """
        for family in families:
            if family.name not in self.kinds:
                self.kinds[family.name] = (family.type, family.help)
                claims.hold(family)
            elif self.kinds[family.name][0] != family.type:
                continue
            values = self.values.setdefault(family.name, {})
            for sample in family.samples:
                if not counting(family.type, family.name, sample.name):
                    continue
                key = (sample.name, sample.labels)
                if key not in values:
                    if self.size >= limit:
                        continue
                    self.size += 1
                values[key] = values.get(key, 0.0) + sample.value


class AppSeries:
    """
    The app's families of every worker process, merged (see the module
    docstring for the rules).
    """

    def __init__(
        self,
        reserved: Callable[[str], bool] = masterReserved,
        retainedLimit: int = MAX_SAMPLES,
    ) -> None:
        """
        @param reserved: whether a family name is the master's own (such
            families of the workers are left out).
        @param retainedLimit: the most samples kept for the gone processes
            of one slot (a worker whose label values change with every
            process would otherwise make the master hold ever more).
        """
        self._reserved = reserved
        self._limit = retainedLimit
        self._live: dict[Key, list[Family]] = {}
        self._status: dict[Key, tuple[str, ...]] = {}
        self._fresh: set[Key] = set()
        self._gone: dict[int, _Totals] = {}
        self._claims = FamilyClaims()

    def known(self) -> set[Key]:
        """
        The processes whose snapshot is kept.
        """
        return set(self._live)

    def fresh(self, key: Key) -> bool:
        """
        Whether process C{key} answered the current scrape.
        """
        return key in self._fresh

    def newScrape(self) -> None:
        """
        A scrape begins: no process has answered it yet.
        """
        self._fresh = set()

    def update(
        self, key: Key, families: list[Family], status: tuple[str, ...] = ()
    ) -> list[str]:
        """
        Process C{key} answered this scrape with C{families}, naming
        C{status} for the status page.

        @return: the names of the families left out because a name they
            may take belongs to another family (see the module docstring).
        """
        for family in self._live.pop(key, ()):
            self._claims.release(family)
        kept, dropped = self._admit(families)
        for family in kept:
            self._claims.hold(family)
        self._live[key] = kept
        self._status[key] = status
        self._fresh.add(key)
        return dropped

    def _admit(self, families: list[Family]) -> tuple[list[Family], list[str]]:
        """
        C{families} split into those whose names are free (or theirs) and
        the names of the others; a family claims its names before the next
        one of the same snapshot is looked at.
        """
        kept: list[Family] = []
        dropped: list[str] = []
        taken = FamilyClaims()
        for family in families:
            if self._reserved(family.name):
                continue
            if self._claims.admits(family) and taken.admits(family):
                taken.hold(family)
                kept.append(family)
            else:
                dropped.append(family.name)
        return kept, dropped

    def wantsStatus(self) -> bool:
        """
        Whether some process names samples for the status page.
        """
        return any(self._status.values())

    def figures(self, key: Key) -> dict[str, float]:
        """
        The samples process C{key} names for the status page, each summed
        over its labels, from its last snapshot.
        """
        names = self._status.get(key, ())
        figures = dict.fromkeys(names, 0.0)
        for family in self._live.get(key, ()):
            for sample in family.samples:
                if sample.name in figures:
                    figures[sample.name] += sample.value
        return figures

    def stale(self, key: Key) -> None:
        """
        Process C{key} did not answer this scrape: its last snapshot still
        counts in the cluster totals, its series are left out.
        """
        self._fresh.discard(key)

    def retire(self, key: Key, final: list[Family] | None = None) -> None:
        """
        Process C{key} is gone: what it had counted joins its slot's totals.

        @param final: the snapshot it sent as it exited, if any (else its
            last one is kept).
        """
        last = self._live.pop(key, None) or []
        for family in last:
            self._claims.release(family)
        self._status.pop(key, None)
        self._fresh.discard(key)
        if final is not None:
            last = _latest(last, self._admit(final)[0])
        if last:
            self._gone.setdefault(key[0], _Totals()).add(last, self._limit, self._claims)

    def collect(self) -> Iterator[Metric]:
        """
        The merged families, as Prometheus metric families.
        """
        kinds: dict[str, tuple[str, str]] = {}
        for key in sorted(self._live):
            for family in self._live[key]:
                kinds.setdefault(family.name, (family.type, family.help))
        for totals in self._gone.values():
            for name, retired in totals.kinds.items():
                kinds.setdefault(name, retired)
        staleSlots = {key[0] for key in self._live if key not in self._fresh}
        for name, (kind, documentation) in sorted(kinds.items()):
            metric = Metric(name, documentation, kind)
            self._addSamples(metric, kind, staleSlots)
            if metric.samples:
                yield metric

    def _addSamples(self, metric: Metric, kind: str, staleSlots: set[int]) -> None:
        name = metric.name
        bySlot: dict[int, dict[_SampleKey, float]] = {}
        for slot, totals in self._gone.items():
            if totals.kinds.get(name, ("",))[0] == kind:
                bySlot[slot] = dict(totals.values.get(name, {}))
        for (slot, pid), families in sorted(self._live.items()):
            fresh = (slot, pid) in self._fresh
            for family in families:
                if family.name != name or family.type != kind:
                    continue
                sums = bySlot.setdefault(slot, {})
                for sample in family.samples:
                    key = (sample.name, sample.labels)
                    if counting(kind, name, sample.name):
                        sums[key] = sums.get(key, 0.0) + sample.value
                    elif fresh:
                        self._add(metric, sample.name, sample.labels, sample.value,
                                  {"worker": str(slot), "pid": str(pid)})
        cluster: dict[_SampleKey, float] = {}
        for slot, sums in sorted(bySlot.items()):
            for key, value in sums.items():
                cluster[key] = cluster.get(key, 0.0) + value
                if slot not in staleSlots:
                    self._add(metric, key[0], key[1], value, {"worker": str(slot)})
        for (sampleName, labels), value in cluster.items():
            self._add(metric, sampleName, labels, value, {"worker": ALL})

    @staticmethod
    def _add(
        metric: Metric, sampleName: str, labels: tuple[tuple[str, str], ...],
        value: float, ours: dict[str, str],
    ) -> None:
        relabelled = _relabel(labels)
        if relabelled is not None:
            metric.add_sample(sampleName, {**relabelled, **ours}, value)
