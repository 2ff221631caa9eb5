"""``pip install`` of the built wheel gives a working ``reconcile``: its dependencies are declared.

The wheel goes into a fresh venv (no system site-packages, no PYTHONPATH) with ``--no-index``:
its dependencies come from a wheelhouse of the runtime lock's versions (requirements.txt, as plain
``name==version`` constraints: pip takes no extras or hashes in a constraints file), downloaded
from PyPI once and kept in ``$RECONCILER_WHEELHOUSE`` (default ``~/.cache/reconciler-tests/
wheelhouse``); later runs need no network. Measured here: ~20 s with the wheelhouse in place
(venv 5 s, wheel 2 s, install 6 s, four commands 4 s), ~10 s more to fill it.

The test times itself: each phase and the total go to the junit XML (``record_property``)
and to one line at the end of pytest's summary (``wheel smoke test: ...``, see conftest.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.txt"


def run(*args: str | Path, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def wheelhouse() -> Path:
    chosen = os.environ.get("RECONCILER_WHEELHOUSE")
    return Path(chosen) if chosen else Path.home() / ".cache" / "reconciler-tests" / "wheelhouse"


def plain_constraints(tmp: Path) -> Path:
    """The lock's pins without extras, hashes or comments (what a constraints file may hold)."""
    pin = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^]]*\])?==([^\s;\\]+)")
    pins = sorted({f"{m[1]}=={m[2]}" for line in LOCK.read_text().splitlines()
                   if (m := pin.match(line))})
    path = tmp / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


def build_wheel(tmp: Path) -> Path:
    """Build from a copy, so the checkout gets no build/ or egg-info."""
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "include" / "reconciler", src / "include" / "reconciler", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ok(run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
           "--no-index", "-w", tmp / "dist", src))
    (wheel,) = (tmp / "dist").glob("reconciler-*.whl")
    return wheel


def install(pip: Path, wheel: Path) -> None:
    """Offline from the wheelhouse; fill it from PyPI first when a locked wheel is missing."""
    house = wheelhouse()
    pins = plain_constraints(wheel.parent.parent)
    offline = (pip, "install", "--no-index", "--find-links", house, "-c", pins, wheel)
    if house.is_dir() and run(*offline).returncode == 0:
        return
    house.mkdir(parents=True, exist_ok=True)
    ok(run(pip, "download", "--dest", house, "-c", pins, wheel))
    (house / wheel.name).unlink()  # only the dependencies: the wheel is rebuilt every run
    ok(run(*offline))


SMOKE_TIMES: dict[str, float] = {}  # phase -> seconds, of the last run (read by conftest.py)


@contextmanager
def _phases(record: Callable[[str, object], None]) -> Iterator[Callable[[str], None]]:
    """``mark(phase)`` ends a phase; the times are recorded even when the test fails."""
    start = last = time.perf_counter()
    SMOKE_TIMES.clear()

    def mark(phase: str) -> None:
        nonlocal last
        now = time.perf_counter()
        SMOKE_TIMES[phase] = round(now - last, 2)
        last = now

    try:
        yield mark
    finally:
        SMOKE_TIMES["total"] = round(time.perf_counter() - start, 2)
        for phase, seconds in SMOKE_TIMES.items():
            record(f"wheel_smoke_{phase}_s", seconds)


def test_the_installed_wheel_runs_the_cli_on_the_demo_target(
        tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    with _phases(record_property) as mark:
        _smoke_test(tmp_path, mark)


def _smoke_test(tmp_path: Path, mark: Callable[[str], None]) -> None:
    venv = tmp_path / "venv"
    ok(run(sys.executable, "-m", "venv", venv))
    mark("venv")
    bin_dir = venv / "bin"
    wheel = build_wheel(tmp_path)
    mark("wheel")
    install(bin_dir / "pip", wheel)
    mark("install")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(RECONCILER_CONFIG=str(ROOT / "include" / "config" / "targets.yaml"),
               RECONCILER_HOME=str(tmp_path / "home"),
               RECONCILER_STORE_URL=f"sqlite:///{tmp_path}/home/state.db")
    where = ok(run(bin_dir / "python", "-c", "import reconciler; print(reconciler.__file__)",
                   env=env, cwd=tmp_path))
    assert where.startswith(str(venv)), where  # the installed copy, not the checkout

    reconcile = bin_dir / "reconcile"
    assert "--version" in ok(run(reconcile, "--help", env=env, cwd=tmp_path))
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ok(run(reconcile, "--version", env=env, cwd=tmp_path)).strip() == f"reconcile {version}"
    assert "valid: 8 resources" in ok(run(reconcile, "validate", "--target", "demo",
                                          env=env, cwd=tmp_path))
    plan = run(reconcile, "plan", "--target", "demo", env=env, cwd=tmp_path)
    assert plan.returncode in (0, 2), plan.stdout + plan.stderr  # in sync, or changes to make
    assert "+ sim.Node/node-a1" in plan.stdout  # the demo fleet starts empty
    mark("commands")
