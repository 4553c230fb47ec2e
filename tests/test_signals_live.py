"""
Integration tests of the operator signals (USR2 upgrade, USR1 log reopen,
QUIT) and of C{--reload}: real masters and workers on 127.0.0.1, every
wait bounded, every process killed by pid, assertions on event fields.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.support import (
    ClusterProcess,
    pidAlive,
    shortTempDir,
    sleep,
    testEnvironment,
    waitUntil,
)
from tests.test_control_live import unixRequest
from tests.test_supervision_live import LoadLoop, get
from tests.test_unixsockets import AS_SYSTEMD, askPid, fileMode
from twisted_cluster import logevents

SLEEPY = ("--app", "tests.apps.sleepy.resource")

#: A parent that starts the master's command line (its arguments) and then
#: sleeps without ever calling wait(): the master it started, once it
#: exits, stays a zombie.
NOT_REAPING = (
    "import subprocess, sys, time; child = subprocess.Popen(sys.argv[1:]); "
    "time.sleep(300)"
)


def withField(cluster: ClusterProcess, **fields: Any) -> list[dict[str, Any]]:
    """
    The master's events that carry every one of C{fields} (C{...}: any value).
    """
    return [
        e for e in cluster.events
        if all(k in e and (v is ... or e[k] == v) for k, v in fields.items())
    ]


def unhandled(cluster: ClusterProcess) -> list[dict[str, Any]]:
    """
    The master's events that report an exception (a failure logged, or
    Twisted's own "Unhandled Error", a legacy event with C{isError}).
    """
    return [e for e in cluster.events if "log_failure" in e or e.get("isError")]


def killLater(case: TestCase, pids: Any) -> None:
    """
    SIGKILL, at the end of C{case}, every pid C{pids()} names then (a new
    master and what it started), before the harness's own clean-up.
    """
    async def kill() -> None:
        found = [p for p in pids() if p and pidAlive(p)]
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        await waitUntil(lambda: not any(pidAlive(p) for p in found), 10, "killed processes")

    case.addCleanup(kill)


def writeApp(directory: str, name: str, body: str) -> str:
    """
    Write the module C{name} answering C{body} and its worker's pid.
    """
    path = os.path.join(directory, f"{name}.py")
    with open(path, "w") as f:
        f.write(
            "import os\n"
            "from twisted.web.resource import Resource\n\n"
            "class Page(Resource):\n"
            "    isLeaf = True\n\n"
            "    def render_GET(self, request):\n"
            f"        return b'{body} %d' % os.getpid()\n\n"
            "resource = Page()\n"
        )
    return path


def rollouts(cluster: ClusterProcess) -> list[dict[str, Any]]:
    """
    The roll-out's start and end events (field C{count}) since the last
    change C{--reload} noticed (field C{files}).
    """
    events = cluster.events
    changes = [i for i, e in enumerate(events) if "files" in e]
    since = events[changes[-1] + 1:] if changes else events
    return [e for e in since
            if e.get("log_namespace") == "twisted_cluster._supervision.rollout"
            and "count" in e]


class UpgradeTests(TestCase):
    timeout = 90

    async def test_usr2UnderLoadFailsNoRequestAndEveryPidIsNew(self) -> None:
        """
        SIGUSR2 under continuous load starts a new master on the same
        sockets; once its workers are ready the old master drains and
        exits.  Not one request fails, and afterwards the master and every
        worker are new processes; the PID file names the new master.  A
        second USR2 while the first is under way is refused with a reason.
        """
        directory = shortTempDir(self)
        pidPath = os.path.join(directory, "cluster.pid")
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--pidfile", pidPath, *SLEEPY, waitReady=2
        )
        oldMaster, oldWorkers = cluster.pid, set(cluster.workers.values())
        policies = {os.sched_getscheduler(p) for p in oldWorkers}
        killLater(self, lambda: [e["new_master_pid"] for e in
                                 withField(cluster, new_master_pid=...)])
        load = LoadLoop(cluster.url, clients=4)
        try:
            await sleep(0.5)
            cluster.signal("USR2")
            # A signal sent while the same one is pending merges with it.
            await waitUntil(lambda: withField(cluster, new_master_pid=..., listeners=...),
                            10, "the new master started")
            cluster.signal("USR2")
            [gone] = await waitUntil(
                lambda: withField(cluster, old_master_pid=oldMaster), 60,
                "the new master to say the old one is gone",
            )
            answered = len(load.pids)
            await sleep(0.5)
        finally:
            await load.stop()
        self.assertEqual(load.failed, [])
        self.assertGreater(len(load.pids), 50)
        newMaster = gone["master_pid"]
        self.assertNotEqual(newMaster, oldMaster)
        self.assertFalse(pidAlive(oldMaster))
        self.assertTrue(pidAlive(newMaster))
        newWorkers = set(cluster.workers.values())
        self.assertFalse(newWorkers & oldWorkers)
        self.assertEqual(set(load.pids[answered:]) - newWorkers, set())
        self.assertFalse(any(pidAlive(p) for p in oldWorkers))
        self.assertEqual({os.sched_getscheduler(p) for p in newWorkers}, policies,
                         "the new workers run in the old ones' scheduling class")
        [refused] = withField(cluster, reason=..., new_master_pid=newMaster)
        self.assertEqual(refused["log_level"]["name"], "warn")
        with open(pidPath) as f:
            self.assertEqual(int(f.read()), newMaster)
        self.assertFalse(os.path.exists(pidPath + ".oldbin"))
        self.assertEqual(unhandled(cluster), [])

    async def test_usr2ThenTermToTheOldMasterFailsNoRequest(self) -> None:
        """
        gunicorn's procedure: USR2, then TERM to the old master before the
        new one is ready.  The old master serves until the new one is
        ready, then hands the sockets over instead of closing them, and no
        request fails.
        """
        cluster = await ClusterProcess.start(self, "--workers", "2", *SLEEPY, waitReady=2)
        killLater(self, lambda: [e["new_master_pid"] for e in
                                 withField(cluster, new_master_pid=...)])
        oldWorkers = set(cluster.workers.values())
        load = LoadLoop(cluster.url, clients=4)
        try:
            await sleep(0.3)
            cluster.signal("USR2")
            [started] = await waitUntil(
                lambda: withField(cluster, new_master_pid=..., listeners=...), 10,
                "the new master started",
            )
            cluster.signal("TERM")
            # (Its exit status is not seen: the new master holds its output.)
            await waitUntil(lambda: not pidAlive(cluster.pid), 30, "the old master to exit")
            await waitUntil(lambda: set(cluster.workers.values()) - oldWorkers, 30,
                            "the new master's workers")
            answered = len(load.pids)
            await sleep(0.5)
        finally:
            await load.stop()
        self.assertEqual(load.failed, [])
        self.assertGreater(len(load.pids), answered)
        self.assertTrue(pidAlive(started["new_master_pid"]))
        ports = {e["address"] for e in withField(cluster, address=...)
                 if e["address"].startswith("127.0.0.1:")}
        self.assertEqual(ports, {f"127.0.0.1:{cluster.port}"}, "the same socket")
        self.assertEqual(unhandled(cluster), [])

    async def notReaped(self, *args: str) -> tuple[ClusterProcess, str, int]:
        """
        A cluster whose master's parent never reaps it (L{NOT_REAPING}),
        as under C{sh -c 'nohup twist cluster ... &'}: the cluster, its
        PID file and the master's pid.  The master that exits stays a
        zombie, whose pid C{kill(pid, 0)} still finds.
        """
        pidPath = os.path.join(shortTempDir(self), "cluster.pid")
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--pidfile", pidPath, *args, waitReady=2,
            prefix=[sys.executable, "-c", NOT_REAPING],
        )
        with open(pidPath) as f:
            master = int(f.read())
        self.assertNotEqual(master, cluster.pid)
        killLater(self, lambda: [master] + [e["new_master_pid"] for e in
                                            withField(cluster, new_master_pid=...)])
        return cluster, pidPath, master

    async def test_usr2ThenTermUnderAParentThatDoesNotReapFailsNoRequest(self) -> None:
        """
        The security review's repro: USR2 then TERM at once to a master
        whose parent never reaps it, under a stream of requests.  The old
        master serves until the new one is ready, then drains and exits
        (a zombie); the new master serves on the same socket, names itself
        in the PID file, and not one request fails.  (The new master used
        to take the zombie for a live stranger, drop its hand-over and
        bind afresh: "Address already in use", no master left.)
        """
        cluster, pidPath, master = await self.notReaped(*SLEEPY)
        oldWorkers = set(cluster.workers.values())
        load = LoadLoop(cluster.url, clients=4)
        try:
            await sleep(0.3)
            os.kill(master, signal.SIGUSR2)
            os.kill(master, signal.SIGTERM)
            [done] = await waitUntil(
                lambda: cluster.logged(logevents.UPGRADE_DONE, old_master_pid=master),
                60, "the new master to say the old one is gone",
            )
            await waitUntil(lambda: not pidAlive(master), 30, "the old master to exit")
            answered = len(load.pids)
            await sleep(0.5)
        finally:
            await load.stop()
        self.assertEqual(load.failed, [])
        self.assertGreater(len(load.pids), answered)
        newMaster = done["master_pid"]
        self.assertTrue(pidAlive(newMaster))
        newWorkers = set(cluster.workers.values())
        self.assertFalse(newWorkers & oldWorkers)
        self.assertEqual(set(load.pids[answered:]) - newWorkers, set())
        [deferred] = cluster.logged(logevents.UPGRADE_STOP_DEFERRED)
        self.assertEqual(deferred["master_pid"], master)
        with open(pidPath) as f:
            self.assertEqual(int(f.read()), newMaster)
        self.assertEqual(unhandled(cluster), [])

    async def test_oldMasterKilledAndNotReapedStillHandsOver(self) -> None:
        """
        An old master SIGKILLed just after USR2, and left a zombie: what it
        handed over is still the new master's, which takes it (the old
        master's pid alone no longer decides) and serves the same socket.
        """
        cluster, pidPath, master = await self.notReaped(*SLEEPY)
        os.kill(master, signal.SIGUSR2)
        [started] = await waitUntil(
            lambda: cluster.logged(logevents.UPGRADE_STARTED), 10, "the new master started"
        )
        os.kill(master, signal.SIGKILL)
        newMaster = started["new_master_pid"]
        await waitUntil(
            lambda: cluster.logged(logevents.UPGRADE_DONE, old_master_pid=master), 60,
            "the new master to take over",
        )
        await waitUntil(
            lambda: len(cluster.logged(logevents.WORKER_READY)) >= 4, 30,
            "the new master's workers",
        )
        code, body = await get(cluster.url)
        self.assertEqual(code, 200)
        self.assertTrue(pidAlive(newMaster))
        self.assertEqual(
            [e["address"] for e in cluster.logged(logevents.LISTENING)
             if e["address"].startswith("127.0.0.1:")],
            [f"127.0.0.1:{cluster.port}"] * 2, "the same socket, adopted",
        )
        self.assertEqual(unhandled(cluster), [])

    async def test_usr2WhoseNewMasterFailsKeepsTheOldOneServing(self) -> None:
        """
        A USR2 after the app broke: the new master cannot load it and says
        so; the old master logs why, keeps its PID file and its workers,
        and serves on.  Once the code is fixed, the next USR2 upgrades.
        """
        directory = shortTempDir(self)
        module = writeApp(directory, "upgraded", "v1")
        pidPath = os.path.join(directory, "cluster.pid")
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--pidfile", pidPath, "--app", "upgraded.resource",
            env=testEnvironment(extraPath=directory), waitReady=2,
        )
        killLater(self, lambda: [e["new_master_pid"] for e in
                                 withField(cluster, new_master_pid=...)])
        old = dict(cluster.workers)
        with open(module, "w") as f:
            f.write("def broken(:\n")
        cluster.signal("USR2")
        [failed] = await waitUntil(
            lambda: withField(cluster, cause="failed", new_master_pid=...), 30,
            "the failed upgrade",
        )
        self.assertEqual(failed["master_pid"], cluster.pid)
        self.assertEqual(failed["log_level"]["name"], "error")
        await waitUntil(lambda: not pidAlive(failed["new_master_pid"]), 10,
                        "the failed new master to exit")
        self.assertTrue(pidAlive(cluster.pid))
        self.assertEqual(cluster.workers, old)
        for _ in range(4):
            code, body = await get(cluster.url)
            self.assertEqual((code, int(body.split()[1]) in old.values()), (200, True))
        with open(pidPath) as f:
            self.assertEqual(int(f.read()), cluster.pid)
        self.assertFalse(os.path.exists(pidPath + ".oldbin"))
        self.assertEqual(unhandled(cluster), [])

        writeApp(directory, "upgraded", "v2")
        cluster.signal("USR2")
        await waitUntil(lambda: withField(cluster, old_master_pid=cluster.pid), 60,
                        "the second upgrade")
        code, body = await get(cluster.url)
        self.assertEqual(body.split()[0], b"v2")


    async def test_termDuringAnUpgradeThatFailsKeepsTheOldMasterServing(self) -> None:
        """
        USR2 then TERM, and the new master cannot load the app: the old
        master never let go of its sockets, says that the stop is not
        carried out, and serves on; the next TERM stops it (exit 0).
        """
        directory = shortTempDir(self)
        module = writeApp(directory, "upgraded", "v1")
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", "upgraded.resource",
            env=testEnvironment(extraPath=directory), waitReady=2,
        )
        killLater(self, lambda: [e["new_master_pid"] for e in
                                 withField(cluster, new_master_pid=...)])
        old = dict(cluster.workers)
        with open(module, "w") as f:
            f.write("def broken(:\n")
        cluster.signal("USR2")
        cluster.signal("TERM")
        [cancelled] = await waitUntil(
            lambda: cluster.logged(logevents.UPGRADE_STOP_CANCELLED), 30,
            "the stop not carried out",
        )
        self.assertEqual(cancelled["master_pid"], cluster.pid)
        self.assertEqual(len(cluster.logged(logevents.UPGRADE_FAILED)), 1)
        for _ in range(4):
            code, body = await get(cluster.url)
            self.assertEqual((code, int(body.split()[1]) in old.values()), (200, True))
        self.assertEqual(cluster.workers, old)
        cluster.signal("TERM")
        self.assertEqual(await cluster.waitExit(30), 0)
        self.assertEqual(unhandled(cluster), [])

    async def test_usr2HandsTheControlSocketOverAtItsPath(self) -> None:
        """
        A fixed C{--control} UNIX socket is inherited too: once the old
        master is gone, the same path answers for the new one, which owns
        the file from then on and removes it when it stops.
        """
        directory = shortTempDir(self)
        control = os.path.join(directory, "ctl.sock")
        cluster = await ClusterProcess.start(
            self, "--workers", "1", "--control", f"unix:{control}", *SLEEPY, waitReady=1
        )
        killLater(self, lambda: [e["new_master_pid"] for e in
                                 withField(cluster, new_master_pid=...)])
        cluster.signal("USR2")
        [gone] = await waitUntil(lambda: withField(cluster, old_master_pid=cluster.pid),
                                 60, "the old master gone")
        newMaster = gone["master_pid"]
        await waitUntil(
            lambda: withField(cluster, address=f"unix:{control}")[1:], 10,
            "the new master's control site",
        )
        answer = unixRequest(control, b"GET /status.json HTTP/1.0\r\n\r\n")
        status = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(status["master"]["pid"], newMaster)
        os.kill(newMaster, signal.SIGTERM)
        await waitUntil(lambda: not pidAlive(newMaster), 30, "the new master to stop")
        self.assertFalse(os.path.exists(control))


class _UpgradeUNIXSockets:
    """
    At an upgrade, the file of a C{unix:} listener passes to the new
    master, and a C{systemd:} socket's stays systemd's; in one dispatch
    mode (C{dispatch}).
    """

    timeout = 90
    dispatch: str

    async def upgraded(self, listen: str, **kwargs: Any) -> tuple[ClusterProcess, int]:
        """
        Start a cluster on C{listen}, upgrade it; the cluster and the new
        master's pid, once the old master is gone.
        """
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", "tests.apps.simple.factory",  # type: ignore[arg-type]
            "--control", "none", "--dispatch", self.dispatch, listen=listen,
            waitReady=0, **kwargs,
        )
        killLater(self, lambda: [e["new_master_pid"] for e in  # type: ignore[arg-type]
                                 withField(cluster, new_master_pid=...)])
        await waitUntil(lambda: len(cluster.workers) == 2, 30, "2 ready workers")
        old = set(cluster.workers.values())
        cluster.signal("USR2")
        [gone] = await waitUntil(lambda: withField(cluster, old_master_pid=cluster.pid),
                                 60, "the old master gone")
        self.assertFalse(set(cluster.workers.values()) & old)
        return cluster, gone["master_pid"]

    async def stopped(self, pid: int) -> None:
        os.kill(pid, signal.SIGTERM)
        await waitUntil(lambda: not pidAlive(pid), 30, "the new master to stop")

    async def test_unixSocketFilePassesToTheNewMaster(self) -> None:
        """
        The new master serves on the same file, with its mode, and removes
        it when it stops.
        """
        path = os.path.join(shortTempDir(self), "app.sock")
        cluster, newMaster = await self.upgraded(f"unix:{path}:mode=600")
        self.assertIn(await deferToThread(askPid, path), set(cluster.workers.values()))
        self.assertEqual(fileMode(path), 0o600)
        await self.stopped(newMaster)
        self.assertFalse(os.path.lexists(path), "the new master left the socket file")

    async def test_systemdSocketStaysSystemds(self) -> None:
        """
        A socket systemd passed is handed over too, and left, file and
        all, when the new master stops.
        """
        path = os.path.join(shortTempDir(self), "app.sock")
        inherited = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(inherited.close)
        inherited.bind(path)
        os.chmod(path, 0o640)
        inherited.listen(16)
        env = testEnvironment()
        env.update(LISTEN_FDS="1", LISTEN_FDNAMES="app")
        cluster, newMaster = await self.upgraded(
            "systemd:domain=UNIX:index=0", env=env,
            prefix=[sys.executable, "-c", AS_SYSTEMD],
            childFDs={0: "w", 1: "r", 2: "r", 3: inherited.fileno()},
        )
        self.assertIn(await deferToThread(askPid, path), set(cluster.workers.values()))
        await self.stopped(newMaster)
        self.assertEqual(fileMode(path), 0o640)
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(path)


class RoundRobinUpgradeUNIXSocketTests(_UpgradeUNIXSockets, TestCase):
    dispatch = "round-robin"


class SharedUpgradeUNIXSocketTests(_UpgradeUNIXSockets, TestCase):
    dispatch = "shared"


class StopNowTests(TestCase):
    timeout = 40

    async def test_quitExitsZeroAtOnceAndLeavesNoWorker(self) -> None:
        """
        SIGQUIT does not wait for requests in flight: the workers are
        killed at once and the master exits 0 within moments.
        """
        cluster = await ClusterProcess.start(self, "--workers", "2", *SLEEPY, waitReady=2)
        workers = set(cluster.workers.values())
        slow = Deferred.fromCoroutine(get(cluster.url + "slow?s=20", timeout=25))
        slow.addErrback(lambda _: None)
        await sleep(0.3)
        started = time.monotonic()
        cluster.signal("QUIT")
        self.assertEqual(await cluster.waitExit(10), 0)
        self.assertLess(time.monotonic() - started, 5)
        self.assertFalse(any(pidAlive(p) for p in workers))
        await slow


class ReopenLogTests(TestCase):
    timeout = 40

    async def test_usr1ReopensARotatedLogFile(self) -> None:
        """
        logrotate moves the log file away (C{create}); after SIGUSR1 the
        master's lines, the forwarded worker lines and each worker app's
        own reopen event go to the new file at the path, none to the old.
        """
        directory = shortTempDir(self)
        logPath = os.path.join(directory, "cluster.log")
        program = (sys.executable, "-m", "twisted", "--log-format=json",
                   f"--log-file={logPath}")
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--app", "tests.apps.reopening.resource",
            program=program, waitReady=0,
        )

        def logged(path: str) -> list[dict[str, Any]]:
            try:
                with open(path, "rb") as f:
                    lines = f.read().split(b"\n")
            except FileNotFoundError:
                return []
            found = []
            for line in lines:
                try:
                    found.append(json.loads(line.lstrip(b"\x1e")))
                except ValueError:
                    pass
            return found

        def readyWorkers() -> dict[int, int]:
            found = {}
            for e in logged(logPath):
                if e.get("cluster_event") == logevents.WORKER_STARTED:
                    cluster.started.add(e["worker_pid"])
                elif e.get("cluster_event") == logevents.WORKER_READY:
                    found[e["worker_id"]] = e["worker_pid"]
            return found

        await waitUntil(lambda: len(readyWorkers()) == 2, 30, "2 ready workers")
        os.rename(logPath, logPath + ".1")
        before = len(logged(logPath + ".1"))
        cluster.signal("USR1")
        reopened = await waitUntil(
            lambda: [e for e in logged(logPath) if "reopened_by" in e], 10,
            "the workers' apps to reopen their files",
        )
        self.assertEqual(sorted(e["reopened_by"] for e in reopened), [1, 2])
        self.assertEqual({e["worker_id"] for e in reopened}, {1, 2},
                         "forwarded worker events carry the worker's id")
        [master] = [e for e in logged(logPath) if e.get("path") == logPath]
        self.assertEqual(master["log_level"]["name"], "info")
        self.assertEqual(len(logged(logPath + ".1")), before,
                         "nothing more goes to the rotated file")


class ReloadTests(TestCase):
    timeout = 60

    async def test_editRollsTheWorkersAndASyntaxErrorKeepsThemServing(self) -> None:
        """
        With C{--reload}, saving a file of the app rolls the workers: the
        next answers come from the new code.  A save that breaks the code
        aborts the roll-out and the workers of the last good code serve on.
        The log warns that the mode is for development.
        """
        directory = shortTempDir(self)
        module = writeApp(directory, "reloaded", "v1")
        cluster = await ClusterProcess.start(
            self, "--workers", "2", "--reload", "--app", "reloaded.resource",
            env=testEnvironment(extraPath=directory), waitReady=2,
        )
        [warning] = withField(cluster, directories=...)
        self.assertEqual(warning["log_level"]["name"], "warn")
        self.assertIn(os.path.realpath(directory), warning["directories"])
        code, body = await get(cluster.url)
        self.assertEqual(body.split()[0], b"v1")

        writeApp(directory, "reloaded", "v2-new")
        await waitUntil(lambda: withField(cluster, files=...), 10, "the change noticed")

        async def answers() -> set[bytes]:
            return {(await get(cluster.url))[1].split()[0] for _ in range(4)}

        await waitUntil(lambda: len(rollouts(cluster)) >= 2, 30, "the roll-out to finish")
        self.assertEqual(await answers(), {b"v2-new"})

        good = dict(cluster.workers)
        with open(module, "w") as f:
            f.write("def broken(:\n")
        [aborted] = await waitUntil(
            lambda: [e for e in cluster.events
                     if e.get("log_namespace") == "twisted_cluster._supervision.rollout"
                     and e["log_level"]["name"] == "error"],
            30, "the aborted roll-out",
        )
        self.assertEqual(os.path.realpath(aborted["error_file"]), os.path.realpath(module))
        self.assertEqual(aborted["exception"].split(":")[0], "SyntaxError")
        self.assertEqual(await answers(), {b"v2-new"})
        self.assertEqual(cluster.workers, good)
        self.assertTrue(pidAlive(cluster.pid))
