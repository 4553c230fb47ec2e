"""
Does heavy scraping of the control site slow down serving?

    .venv/bin/python -m benchmarks.scrape [--seconds 3]

Starts C{twist cluster --workers 2} on 127.0.0.1 with a TCP control site,
measures the requests/s of new-connection (C{Connection: close}) requests
with wrk (C{-t1 -c8}), then again while a second wrk scrapes C{/metrics}
(with the token) as fast as it can, and prints both rates and the scrape
rate.  Bounded in time; the master is stopped (TERM, then KILL) by pid.
Needs wrk.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _wrk(url: str, seconds: float, *headers: str) -> subprocess.Popen[str]:
    args = ["wrk", "-t1", "-c8", f"-d{round(seconds)}s"]
    for header in headers:
        args += ["-H", header]
    return subprocess.Popen([*args, url], stdout=subprocess.PIPE, text=True)


def _rate(run: subprocess.Popen[str]) -> float:
    out, _ = run.communicate(timeout=60)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    serve, control = _free(), _free()
    directory = tempfile.mkdtemp(prefix="tc-scrape-")
    token = os.path.join(directory, "token")
    master = subprocess.Popen(
        [sys.executable, "-m", "twisted", "cluster", "--workers", "2",
         "--listen", f"tcp:{serve}:interface=127.0.0.1",
         "--control", f"tcp:{control}:interface=127.0.0.1", "--control-token", token],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (os.path.exists(token) and _answers(serve)):
            if time.monotonic() > deadline or master.poll() is not None:
                raise SystemExit("benchmarks.scrape: the cluster did not start")
            time.sleep(0.2)
        with open(token) as f:
            bearer = f"Authorization: Bearer {f.read().strip()}"
        close = "Connection: close"
        alone = _rate(_wrk(f"http://127.0.0.1:{serve}/", args.seconds, close))
        scraper = _wrk(f"http://127.0.0.1:{control}/metrics", args.seconds + 1, bearer)
        time.sleep(0.5)
        scraped = _rate(_wrk(f"http://127.0.0.1:{serve}/", args.seconds, close))
        scrapes = _rate(scraper)
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(10)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
        shutil.rmtree(directory, True)
    print(f"close-regime requests/s alone:         {alone:8.0f}")
    print(f"close-regime requests/s while scraped: {scraped:8.0f} ({scraped / alone:.0%})")
    print(f"/metrics scrapes/s:                    {scrapes:8.0f}")


if __name__ == "__main__":
    main()
