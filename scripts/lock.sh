#!/usr/bin/env bash
# Regenerate the three hashed locks from their inputs, keeping every version already locked:
#   requirements-dev.in        -> requirements-dev.txt        (what .venv installs: runtime + dev)
#   requirements.in            -> requirements.txt            (the Airflow image: runtime only)
#   deploy/requirements-moto.in -> deploy/requirements-moto.txt (the demo AWS image)
# The dev lock is resolved first (its current pins are kept as preferences); the other two are
# resolved under it as a constraint, so a package has one version in all three.
#
#   scripts/lock.sh                               # after editing an .in file: nothing else moves
#   scripts/lock.sh --upgrade-package setuptools  # move one package to its newest allowed version
#   scripts/lock.sh --upgrade                     # move everything
#
# The tool is uv (`uv pip compile --generate-hashes`), installed in a throwaway venv under
# ${TMPDIR:-/tmp}, never in .venv. Hashes are PyPI's, every file of each version (any platform).
# Resolved for CPython 3.11 on Linux (3.11.3 or later: before it redis also wants async-timeout).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
tool=${TMPDIR:-/tmp}/reconciler-lock-uv-$UV_VERSION
if [ ! -x "$tool/bin/uv" ]; then
  "$PYTHON" -m venv "$tool"
  log=$(mktemp)  # pip here warns about every missing mirror folder: show it only on failure
  "$tool/bin/python" -m pip install --disable-pip-version-check "uv==$UV_VERSION" >"$log" 2>&1 \
    || { grep -v '^WARNING: Location' "$log" >&2; exit 1; }
  rm -f "$log"
fi
compile() {  # compile IN OUT [args...]
  local in=$1 out=$2; shift 2
  "$tool/bin/uv" pip compile --quiet --generate-hashes --python-version 3.11.7 \
    --python-platform x86_64-unknown-linux-gnu --no-strip-extras \
    --custom-compile-command scripts/lock.sh \
    "$in" -o "$out" "$@"
}
plain_twins() {  # name[extra]==v gets a twin name==v with the same hashes (see below)
  "$PYTHON" - "$@" <<'PY'
import re, sys
for path in sys.argv[1:]:
    text = open(path).read()
    out = []
    for block in re.split(r"(?m)^(?=[A-Za-z0-9])", text):
        out.append(block)
        pin = re.match(r"([A-Za-z0-9._-]+)\[[^\]]+\](==\S+)", block)
        if pin and not re.search(rf"(?m)^{re.escape(pin[1])}{re.escape(pin[2])} ", text):
            hashes = [line for line in block.splitlines() if "--hash=" in line]
            hashes[-1] = hashes[-1].rstrip(" \\")
            out.append(f"{pin[1]}{pin[2]} \\\n" + "\n".join(hashes)
                       + f"\n    # the same as {pin[0].split('==')[0]}, for older pip\n")
    open(path, "w").write("".join(out))
PY
}
compile requirements-dev.in requirements-dev.txt "$@"
compile requirements.in requirements.txt -c requirements-dev.txt
compile deploy/requirements-moto.in deploy/requirements-moto.txt -c requirements-dev.txt
# pip 23.2.1 (what Python 3.11.7's venv brings) in --require-hashes mode takes
# `uvicorn[standard]==0.54.0` as no pin for a dependency's plain `uvicorn>=0.37` and refuses the
# whole install (pip 26.3 does not). A plain twin of each extras line, same hashes, satisfies both.
plain_twins requirements-dev.txt requirements.txt deploy/requirements-moto.txt
for f in requirements-dev.txt requirements.txt deploy/requirements-moto.txt; do
  echo "lock: $f: $(grep -oE '^[A-Za-z0-9._-]+' "$f" | sort -uf | wc -l) packages"
done
