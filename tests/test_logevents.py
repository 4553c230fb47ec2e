"""
The vocabulary of L{twisted_cluster.logevents}: each name is unique and
logged somewhere, so that a filter documented in docs/observability.md can
match.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

import twisted_cluster
from twisted_cluster import logevents


def _names() -> dict[str, str]:
    return {n: getattr(logevents, n) for n in dir(logevents) if n.isupper()}


def _source() -> str:
    root = os.path.dirname(twisted_cluster.__file__)
    texts = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py") and name != "logevents.py":
                with open(os.path.join(folder, name)) as f:
                    texts.append(f.read())
    return "\n".join(texts)


class VocabularyTests(SynchronousTestCase):
    def test_valuesAreUnique(self) -> None:
        values = list(_names().values())
        self.assertEqual(len(values), len(set(values)))

    def test_everyNameIsDocumented(self) -> None:
        """
        docs/observability.md ("Log events") lists every name, so that an
        operator can find the one to filter on.
        """
        docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "docs", "observability.md")
        with open(docs) as f:
            text = f.read()
        missing = [v for v in _names().values() if f"`{v}`" not in text]
        self.assertEqual(missing, [])

    def test_everyNameIsLogged(self) -> None:
        source = _source()
        unused = [n for n in _names() if f"cluster_event=logevents.{n}" not in source]
        self.assertEqual(unused, [])
