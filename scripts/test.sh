#!/usr/bin/env bash
# Lint (ruff, mypy --strict on the core, import contracts) then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/services.sh
export PATH="$PWD/.venv/bin:$PATH" RECONCILER_HOME="${RECONCILER_HOME:-$PWD/.reconciler/test}"
echo "== ruff";        ruff check include plugins dags tests bench scripts
echo "== mypy";        mypy --strict -p reconciler.core
echo "== import contracts"; lint-imports --no-cache
echo "== pytest";      python -m pytest "$@"
