#!/usr/bin/env bash
# The main job on the embedded default: the demo target on the simulated provider.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH" RECONCILER_HOME="${RECONCILER_HOME:-$PWD/.reconciler/demo}"
mkdir -p "$RECONCILER_HOME"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "reconcile validate --target demo";  reconcile validate --target demo
step "reconcile sim seed (a fleet that matches the desired state)"; reconcile sim seed --target demo
step "reconcile sim drift (someone changes things by hand)"; reconcile sim drift --target demo
step "reconcile plan --target demo (read-only; exit 2 = changes)"; reconcile plan --target demo || [ $? -eq 2 ]
step "reconcile apply --target demo --yes"; reconcile apply --target demo --yes
step "reconcile plan --target demo (converged: nothing to do)"; reconcile plan --target demo
step "reconcile history --target demo"; reconcile history --target demo
