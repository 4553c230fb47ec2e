#!/bin/sh
# Install what the tests need into .venv and run them all with trial.
# Usage: sh tests/run.sh [trial arguments]   (default: the whole suite)
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check '.[test]'
# The status page's browser test needs headless Chromium (skipped without it).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null || echo "tests/run.sh: could not install chromium" >&2
fi
if [ "$#" -eq 0 ]; then
    set -- tests
fi
exec .venv/bin/python -m twisted.trial --temp-directory=_trial_temp "$@"
