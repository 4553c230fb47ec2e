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
if [ "$#" -eq 0 ]; then
    set -- tests
fi
exec .venv/bin/python -m twisted.trial --temp-directory=_trial_temp "$@"
