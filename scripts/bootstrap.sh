#!/usr/bin/env bash
# Create .venv and install the hashed dev lock once (re-runs only when a lock or pyproject.toml
# changes). requirements-dev.txt is the runtime lock plus the dev/test tools, every package pinned
# with PyPI's hashes (scripts/lock.sh makes it); the project itself goes in after, --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
quiet() {  # pip on these machines warns about every missing mirror folder: show output only on failure
  local log; log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then grep -v '^WARNING: Location' "$log" >&2; rm -f "$log"; return 1; fi
  rm -f "$log"
}
stamp=.venv/.installed
want=$(cat requirements-dev.txt requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing the hashed lock requirements-dev.txt (first run takes a few minutes)"
  quiet .venv/bin/python -m pip install --disable-pip-version-check --require-hashes \
    -r requirements-dev.txt
  quiet .venv/bin/python -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
  # PYTHONDONTWRITEBYTECODE is set on these machines: compile once, or every import re-parses.
  .venv/bin/python -m compileall -q -j 0 .venv/lib include plugins dags >/dev/null 2>&1 || true
  echo "$want" > "$stamp"
fi
