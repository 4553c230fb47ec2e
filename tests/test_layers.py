"""
The package's layout by where code runs (docs/how-it-works.md) holds in
the imports: the contract and the shared helpers import no side, the
worker's runtime imports nothing of the master, and the master's data path
and supervision know nothing of the control plane above them.  Read from
the source with C{ast}: imports under C{if TYPE_CHECKING:} are types only
and not counted.
"""

from __future__ import annotations

import ast
import os

from twisted.trial.unittest import SynchronousTestCase

import twisted_cluster

ROOT = os.path.dirname(twisted_cluster.__file__)

#: For each folder, the folders of the package it must never import.
FORBIDDEN = {
    "_contract": {"_master", "_supervision", "_worker", "_control"},
    "_shared": {"_contract", "_master", "_supervision", "_worker", "_control"},
    "_worker": {"_master", "_supervision", "_control"},
    "_supervision": {"_master", "_worker", "_control"},
    "_master": {"_worker", "_control"},
    "_control": {"_worker"},
}


def _imports(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    typeOnly: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typeOnly.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in typeOnly:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


class LayerTests(SynchronousTestCase):
    def test_noFolderImportsAFolderAboveOrBesideIt(self) -> None:
        wrong = []
        for folder, forbidden in FORBIDDEN.items():
            for name in sorted(os.listdir(os.path.join(ROOT, folder))):
                relative = f"{folder}/{name}"
                if not name.endswith(".py"):
                    continue
                for module in _imports(os.path.join(ROOT, folder, name)):
                    parts = module.split(".")
                    if parts[0] == "twisted_cluster" and len(parts) > 1 and parts[1] in forbidden:
                        wrong.append(f"{relative} imports {module}")
        self.assertEqual(wrong, [])
