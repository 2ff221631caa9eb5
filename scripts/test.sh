#!/usr/bin/env bash
# Lint (ruff, mypy --strict on the core, import contracts) then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/services.sh
# Debian's headless Chromium for the dashboard's browser test (tests/ui; Playwright drives it)
if ! command -v chromium >/dev/null; then
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# Debian's Docker engine and rootfs builder for the compose system test (tests/system/
# test_compose_engine.py starts its own dockerd on a private socket; it needs root)
if ! command -v dockerd >/dev/null || ! command -v mmdebstrap >/dev/null; then
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io mmdebstrap >/dev/null
fi
export PATH="$PWD/.venv/bin:$PATH" RECONCILER_HOME="${RECONCILER_HOME:-$PWD/.reconciler/test}"
echo "== ruff";        ruff check include plugins dags tests bench scripts
echo "== mypy";        mypy --strict -p reconciler.core
echo "== import contracts"; lint-imports --no-cache
echo "== pytest";      python -m pytest "$@"
