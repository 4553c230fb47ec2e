"""
The wire format of a worker's application metrics: what a worker answers
to L{twisted_cluster._contract.commands.CollectMetrics} and sends in
L{twisted_cluster._contract.commands.FinalMetrics}.

A snapshot is one JSON object (UTF-8)::

    {"version": 1,
     "families": [
        {"name": "app_requests", "type": "counter", "help": "Requests.",
         "samples": [["app_requests_total", {"path": "/"}, 12.0]]}],
     "status": ["app_requests_total"]}

C{name}, C{type}, C{help} and C{samples} are those of a
C{prometheus_client} metric family (C{Metric}), with each sample as
C{[sample name, labels, value]}; C{*_created} samples, timestamps and
exemplars are left out.  C{status} (optional) names the samples the
app wants on the status page (L{ClusterApp.statusSeries
<twisted_cluster.ClusterApp>}).  JSON rather than the Prometheus text format: the
master decodes it at C{json}'s C speed instead of running a text parser
over every worker's series at every scrape.

The format is tolerant, like L{WorkerConfig
<twisted_cluster._contract.workerconfig.WorkerConfig>}: a reader ignores
keys it does not know, and L{VERSION} is raised only when a key changes
meaning.  The master does not trust what it reads: L{decodeSnapshot}
bounds the size, the number of families and samples and the length of
every string, checks every name against Prometheus' grammar and every
sample against its family, and refuses the whole snapshot otherwise.

This module imports nothing of C{prometheus_client}: a worker whose app
does not use it must not load it.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

import attr

#: The shape of a snapshot (see the module docstring).
VERSION = 1

#: The most bytes of one snapshot the master accepts from a worker.
MAX_BYTES = 4 * 1024 * 1024

#: The most samples (series) of one snapshot.
MAX_SAMPLES = 20_000

#: The most families of one snapshot.
MAX_FAMILIES = 5_000

#: The most labels of one sample.
MAX_LABELS = 32

#: The longest name (of a family, a sample or a label).
MAX_NAME = 200

#: The longest label value, and the longest help text.
MAX_TEXT = 2048

#: The most sample names a snapshot may name for the status page.
MAX_STATUS = 4

#: Family types, and the suffixes their samples may add to the family name.
SUFFIXES: Mapping[str, tuple[str, ...]] = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class SnapshotError(ValueError):
    """
    A snapshot the master refuses; C{str()} says why, in one line.
    """


@attr.s(frozen=True, auto_attribs=True)
class Sample:
    """
    One series of a family: its full name, its labels, its value.
    """

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@attr.s(frozen=True, auto_attribs=True)
class Family:
    """
    One metric family of a worker, as the master keeps it.
    """

    name: str
    type: str
    help: str
    samples: tuple[Sample, ...]


@attr.s(frozen=True, auto_attribs=True)
class Snapshot:
    """
    A worker's families, and the sample names its app wants on the status
    page.
    """

    families: list[Family]
    status: tuple[str, ...] = ()


def encodeSnapshot(families: Iterable[Family], status: Iterable[str] = ()) -> bytes:
    """
    The snapshot of C{families}, as a worker sends it, naming C{status}
    for the status page.
    """
    document = {
        "version": VERSION,
        "status": list(status),
        "families": [
            {
                "name": family.name,
                "type": family.type,
                "help": family.help,
                "samples": [
                    [sample.name, dict(sample.labels), sample.value]
                    for sample in family.samples
                ],
            }
            for family in families
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def _name(value: Any, grammar: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME or not grammar.match(value):
        raise SnapshotError(f"bad {what} {str(value)[:MAX_NAME]!r}")
    return value


def _labels(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or len(value) > MAX_LABELS:
        raise SnapshotError("labels must be an object of at most %d labels" % MAX_LABELS)
    labels = []
    for key, text in value.items():
        _name(key, _LABEL_NAME, "label name")
        if key.startswith("__"):
            raise SnapshotError(f"label name {key!r} is reserved")
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise SnapshotError(f"bad value of label {key!r}")
        labels.append((key, text))
    return tuple(sorted(labels))


def _value(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SnapshotError(f"sample value {str(value)[:40]!r} is not a number")
    return float(value)


def _bounds(kind: str, family: str, sample: str, labels: tuple[tuple[str, str], ...]) -> None:
    """
    Check that a bucket has its C{le} bound and a summary's quantile its
    C{quantile}, each a number: Prometheus refuses a whole scrape over one
    such sample, which a worker must not be able to make it do.
    """
    if sample.endswith("_bucket") and kind in ("histogram", "gaugehistogram"):
        needed = "le"
    elif sample == family and kind == "summary":
        needed = "quantile"
    else:
        return
    bound = dict(labels).get(needed)
    try:
        float(bound or "")
    except ValueError:
        raise SnapshotError(f"sample {sample} needs a number as its {needed} label") from None


def _family(entry: Any, budget: list[int]) -> Family:
    if not isinstance(entry, dict):
        raise SnapshotError("a family must be an object")
    name = _name(entry.get("name"), _METRIC_NAME, "family name")
    kind = entry.get("type")
    if not isinstance(kind, str) or kind not in SUFFIXES:
        raise SnapshotError(f"family {name} has unknown type {str(kind)[:40]!r}")
    text = entry.get("help", "")
    if not isinstance(text, str):
        raise SnapshotError(f"family {name} has a help that is no string")
    raw = entry.get("samples")
    if not isinstance(raw, list):
        raise SnapshotError(f"family {name} has no list of samples")
    budget[0] -= len(raw)
    if budget[0] < 0:
        raise SnapshotError(f"more than {MAX_SAMPLES} samples")
    allowed = {name + suffix for suffix in SUFFIXES[kind]}
    samples = []
    for item in raw:
        if not isinstance(item, list) or len(item) < 3:
            raise SnapshotError(f"family {name} has a sample that is no [name, labels, value]")
        sampleName = item[0]
        if sampleName not in allowed:
            raise SnapshotError(f"sample {str(sampleName)[:MAX_NAME]!r} is not of {kind} {name}")
        labels = _labels(item[1])
        _bounds(kind, name, sampleName, labels)
        samples.append(Sample(sampleName, labels, _value(item[2])))
    return Family(name, kind, text[:MAX_TEXT], tuple(samples))


def _status(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_STATUS:
        raise SnapshotError(f"status must be a list of at most {MAX_STATUS} names")
    return tuple(_name(name, _METRIC_NAME, "status sample name") for name in value)


def decodeSnapshot(data: bytes) -> Snapshot:
    """
    The families (and status names) of a snapshot that a worker sent.

    @raise SnapshotError: when the snapshot is too large, is not a snapshot
        or breaks a bound (see the module docstring); nothing of it is kept.
    """
    if len(data) > MAX_BYTES:
        raise SnapshotError(f"snapshot of {len(data)} bytes, over {MAX_BYTES}")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise SnapshotError(f"snapshot is not JSON: {str(e)[:100]}") from None
    if not isinstance(document, dict) or not isinstance(document.get("families"), list):
        raise SnapshotError("snapshot has no list of families")
    entries = document["families"]
    if len(entries) > MAX_FAMILIES:
        raise SnapshotError(f"more than {MAX_FAMILIES} families")
    budget = [MAX_SAMPLES]
    families = [_family(entry, budget) for entry in entries]
    names = [family.name for family in families]
    if len(set(names)) != len(names):
        raise SnapshotError("a family name appears twice")
    return Snapshot(families, _status(document.get("status", [])))

