#!/bin/sh
# Install what the tests need into .venv and run them all with trial.
# Usage: sh tests/run.sh [trial arguments]   (default: the whole suite)
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# A build/ left by an earlier install would bring back modules deleted since.
rm -rf build
.venv/bin/python -m pip install --quiet --disable-pip-version-check '.[test]'
# Debian packages some integration tests use (each skips, with its reason,
# when its program is missing): headless Chromium for the status page's
# browser test, HAProxy for the deployment example, Prometheus for a real
# scrape of the cluster's /metrics.
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v haproxy >/dev/null 2>&1 || missing="$missing haproxy"
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null; } \
        || echo "tests/run.sh: could not install$missing" >&2
fi
if [ "$#" -eq 0 ]; then
    set -- tests
fi
exec .venv/bin/python -m twisted.trial --temp-directory=_trial_temp "$@"
