#!/usr/bin/env bash
# The main job on the embedded default: Airflow + the demo target + a drifted simulated fleet.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH" RECONCILER_HOME="${RECONCILER_HOME:-$PWD/.reconciler/demo}"
exec python scripts/demo.py "$@"
