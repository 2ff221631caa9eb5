"""Mutation testing of the core with cosmic-ray: can the unit tests fail? Score per module.

    python bench/mutation.py                      # the core modules, one after another
    python bench/mutation.py --modules plan,sense # some of them
    python bench/mutation.py --all-unit-tests     # every mutant against all of tests/unit (slow)

Each module runs in a copy of the tree under a temporary folder (cosmic-ray rewrites the module
file in place), against the unit test files that exercise it (``TESTS``; all of them are in
tests/unit). A mutant is killed when those tests fail or time out; a mutant listed in
bench/mutation-equivalents.md (same module, operator and mutated line) behaves like the
original and is left out of the score. Exits 1 when a module scores under ``--fail-under``.
Run it under ``nice``: one mutant at a time, a pytest process each (~1-2 s). ``--keep DIR`` saves
the sessions; ``--survivors-of DIR`` then re-runs only what they left alive (after adding tests).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = "include/reconciler/core"
EQUIVALENTS = ROOT / "bench" / "mutation-equivalents.md"

# The unit test files that exercise each module (a mutant runs these, first failure stops it).
TESTS: dict[str, tuple[str, ...]] = {
    "sense": ("test_sense.py", "test_inflight.py", "test_fidelity.py"),
    "compare": ("test_compare.py", "test_plan.py", "test_update_fields.py", "test_unmanaged.py"),
    "plan": ("test_plan.py", "test_update_payloads.py", "test_update_fields.py",
             "test_rollback_points.py", "test_fidelity.py", "test_regions.py"),
    # plan's order and review, split out of plan.py: the same tests as plan
    "planorder": ("test_plan.py", "test_update_payloads.py", "test_update_fields.py",
                  "test_rollback_points.py", "test_fidelity.py", "test_regions.py"),
    "planreview": ("test_plan.py", "test_update_payloads.py", "test_update_fields.py",
                   "test_rollback_points.py", "test_fidelity.py", "test_regions.py"),
    "actuate": ("test_actuate.py", "test_inflight.py", "test_guard.py",
                "test_rollback_points.py", "test_fidelity.py"),
    "convergence": ("test_convergence.py",),
}

# Left out of every run, with why. Binary operators become only their arithmetic neighbours
# (a shift or bitwise operator in place of ``+`` on a str or a dict fails at once, telling
# nothing); ``==`` becoming ``is`` depends on interning; removing ``@without_gc`` or
# ``@dataclass`` is either invisible by design (a GC pause) or breaks every import.
EXCLUDED_OPERATORS = (
    r"core/ReplaceBinaryOperator_\w+_(Pow|LShift|RShift|BitOr|BitAnd|BitXor|FloorDiv|Mod)$",
    r"core/ReplaceBinaryOperator_(Pow|LShift|RShift|BitOr|BitAnd|BitXor|FloorDiv|Mod)_",
    r"core/ReplaceComparisonOperator_(Eq|NotEq|Lt|LtE|Gt|GtE|In|NotIn)_(Is|IsNot)$",
    r"core/RemoveDecorator",
)


@dataclass(frozen=True)
class Mutant:
    module: str
    operator: str
    line: int
    text: str  # the original source line, stripped
    mutated: str  # the line as the mutant has it, stripped
    killed: bool


@dataclass(frozen=True)
class Equivalent:
    module: str
    operator: str
    mutated: str
    reason: str


def load_equivalents(path: Path = EQUIVALENTS) -> list[Equivalent]:
    """Rows of the markdown table: | module | operator | `mutated line` | reason |."""
    rows = []
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[1].startswith("core/"):
            continue
        rows.append(Equivalent(cells[0], cells[1], cells[2].strip("`"), cells[3]))
    return rows


def _config(module: str, tests: list[str], timeout: float) -> str:
    command = " ".join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                        *tests])
    excluded = ", ".join(f"'{e}'" for e in EXCLUDED_OPERATORS)
    return (f'[cosmic-ray]\nmodule-path = "{CORE}/{module}.py"\ntimeout = {timeout}\n'
            f'excluded-modules = []\ntest-command = "{command}"\n\n'
            f'[cosmic-ray.distributor]\nname = "local"\n\n'
            f"[cosmic-ray.filters.operators-filter]\nexclude-operators = [{excluded}]\n")


def _copy_tree(dest: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for part in ("include", "tests", "plugins"):
        shutil.copytree(ROOT / part, dest / part, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def run_module(module: str, workdir: Path, all_unit: bool, timeout: float,
               earlier: Path | None = None) -> list[Mutant]:
    tests = (["tests/unit"] if all_unit else [f"tests/unit/{t}" for t in TESTS[module]])
    cfg, db = workdir / f"{module}.toml", workdir / f"{module}.sqlite"
    cfg.write_text(_config(module, tests, timeout))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",  # a same-size mutant must not hit a .pyc
           "RECONCILER_HOME": str(workdir / ".reconciler")}
    bindir = Path(sys.executable).parent
    steps = [["cosmic-ray", "init", cfg, db], ["cr-filter-operators", db, cfg],
             ["cosmic-ray", "exec", cfg, db]]
    for step in steps:
        if step[1] == "exec" and earlier is not None:
            _reuse_kills(module, workdir, db, earlier)
        subprocess.run([str(bindir / str(step[0])), *map(str, step[1:])], cwd=workdir, env=env,
                       check=True, stdout=subprocess.DEVNULL)
    return _results(module, workdir, db)


def _source_digest(workdir: Path, module: str) -> str:
    return hashlib.sha256((workdir / CORE / f"{module}.py").read_bytes()).hexdigest()


def _reuse_kills(module: str, workdir: Path, db: Path, earlier: Path) -> None:
    """Tests were only added since ``earlier``: a mutant it killed stays killed, if the module's
    source is the same (same source, same mutants, same occurrence numbers)."""
    from cosmic_ray.work_db import WorkDB, use_db

    old_db, digest = earlier / f"{module}.sqlite", earlier / f"{module}.sha256"
    if not old_db.exists() or not digest.exists():
        return
    if digest.read_text().strip() != _source_digest(workdir, module):
        print(f"{module}: source changed since {earlier}; running every mutant")
        return
    with use_db(str(old_db), WorkDB.Mode.open) as old:
        kills = {(item.mutations[0].operator_name, item.mutations[0].occurrence): result
                 for item, result in old.completed_work_items if result.is_killed}
    with use_db(str(db), WorkDB.Mode.open) as new:
        for item in new.pending_work_items:
            spec = item.mutations[0]
            if (spec.operator_name, spec.occurrence) in kills:
                new.set_result(item.job_id, kills[(spec.operator_name, spec.occurrence)])


def _results(module: str, workdir: Path, db: Path) -> list[Mutant]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome

    lines = (workdir / CORE / f"{module}.py").read_text().splitlines()
    out = []
    with use_db(str(db), WorkDB.Mode.open) as work_db:
        for item, result in work_db.completed_work_items:
            if result.worker_outcome in (WorkerOutcome.SKIPPED, WorkerOutcome.NO_TEST):
                continue
            (spec,) = item.mutations
            line = spec.start_pos[0]
            changed = [d[1:].strip() for d in (result.diff or "").splitlines()
                       if d.startswith("+") and not d.startswith("+++")]
            out.append(Mutant(module, spec.operator_name, line, lines[line - 1].strip(),
                              changed[0] if changed else "", bool(result.is_killed)))
    return sorted(out, key=lambda m: (m.line, m.operator))


def is_equivalent(mutant: Mutant, equivalents: list[Equivalent]) -> bool:
    return any(e.module == mutant.module and e.operator == mutant.operator
               and e.mutated == mutant.mutated for e in equivalents)


def report(module: str, mutants: list[Mutant], equivalents: list[Equivalent],
           seconds: float) -> float:
    eq = [m for m in mutants if not m.killed and is_equivalent(m, equivalents)]
    survivors = [m for m in mutants if not m.killed and m not in eq]
    killed = sum(m.killed for m in mutants)
    scored = len(mutants) - len(eq)
    score = killed / scored if scored else 1.0
    print(f"{module:12} killed {killed}/{scored} = {score:.1%}  "
          f"({len(eq)} equivalent, {len(survivors)} surviving, {seconds:.0f}s)")
    for m in survivors:
        print(f"  survived {module}.py:{m.line} {m.operator}: {m.text}")
        print(f"      -> {m.mutated}")
    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default=",".join(TESTS))
    parser.add_argument("--all-unit-tests", action="store_true")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--fail-under", type=float, default=0.90)
    parser.add_argument("--keep", type=Path, help="keep the sessions (sqlite) in this folder")
    parser.add_argument("--survivors-of", type=Path, metavar="KEPT",
                        help="re-run only the mutants a kept earlier session did not kill")
    args = parser.parse_args(argv)
    modules = [m for m in args.modules.split(",") if m]
    unknown = set(modules) - set(TESTS)
    if unknown:
        parser.error(f"unknown module(s): {sorted(unknown)}; choose from {sorted(TESTS)}")
    equivalents = load_equivalents()
    scores = {}
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        workdir = Path(tmp)
        _copy_tree(workdir)
        for module in modules:
            t0 = time.monotonic()
            mutants = run_module(module, workdir, args.all_unit_tests, args.timeout,
                                 args.survivors_of)
            scores[module] = report(module, mutants, equivalents, time.monotonic() - t0)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(workdir / f"{module}.sqlite", args.keep / f"{module}.sqlite")
                (args.keep / f"{module}.sha256").write_text(_source_digest(workdir, module))
            sys.stdout.flush()
    low = [m for m, s in scores.items() if s < args.fail_under]
    if low:
        print(f"under {args.fail_under:.0%}: {', '.join(low)}")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
