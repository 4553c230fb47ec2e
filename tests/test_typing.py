"""
Users' code type-checks against the developer API with plain mypy (no
mypy-zope plugin): the contexts have Protocol classes beside their zope
interfaces, and the package ships C{py.typed}.  Skipped where mypy is not
installed (C{pip install mypy}).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

from twisted.trial.unittest import SynchronousTestCase

import twisted_cluster

USER_CODE = '''
from typing import Any

from twisted.internet.defer import Deferred
from twisted.protocols import amp

from twisted_cluster import (
    BroadcastAnswers, ClusterApp, MasterContextProtocol, MasterEvents,
    WorkerContextProtocol, WorkerEvent, WorkerHooks,
)


class Publish(amp.Command):
    arguments = [(b"room", amp.Unicode())]
    response = []


class Hub(amp.CommandLocator, MasterEvents):
    def __init__(self, master: MasterContextProtocol) -> None:
        self.master = master

    async def fanOut(self, room: str) -> int:
        answers: BroadcastAnswers = await self.master.broadcast(Publish, timeout=2, room=room)
        return len(answers.everyAnswer()) + len(self.master.workerIds(draining=True))

    def workerExited(self, event: WorkerEvent) -> None:
        print(event.cause, event.exitCode)


class Worker(WorkerHooks):
    def __init__(self, context: WorkerContextProtocol) -> None:
        self.context = context

    def publish(self, room: str) -> Deferred[Any]:
        return self.context.callMaster(Publish, room=room)

    def workerDraining(self, deadline: float) -> None:
        self.context.callWorker(2, Publish, room=str(deadline))


app = ClusterApp(app=Worker, masterResponders=Hub)
'''


class PlainMypyTests(SynchronousTestCase):
    def test_userCodeTypeChecksWithoutThePlugin(self) -> None:
        if importlib.util.find_spec("mypy") is None:
            raise self.skipTest("mypy is not installed (pip install '.[test]')")
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "userapp.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(USER_CODE))
        # The installed package, as a user's mypy finds it.
        package = os.path.dirname(twisted_cluster.__file__)
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--no-incremental", "--config-file", os.devnull,
             "--disallow-untyped-defs", path],
            capture_output=True, text=True, timeout=240, cwd=folder,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(os.path.exists(os.path.join(package, "py.typed")))
