"""Orchestration overhead: a no-drift cycle under Airflow versus the same cycle through the CLI,
for this tree and (``--baseline REV``) an earlier commit, in the same run.

Airflow runs as ``airflow standalone`` would (api-server, scheduler, dag-processor, triggerer,
LocalExecutor, SQLite), each component started separately so it can be stopped by PID. Besides
wall times it measures the CPU-seconds the whole Airflow stack spends per no-drift cycle (every
process of it and every task process it ran: user + system, reaped children included), over the
runs, after one warm-up run. Prints figures and ratios; asserts nothing.

    .venv/bin/python bench/cycle_overhead.py [--runs 3] [--baseline d0f59bd]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import AirflowStack  # noqa: E402


def stack_cpu_s(stack: AirflowStack) -> float:
    """CPU-seconds used so far by the stack's processes and all their descendants."""
    import psutil

    total = 0.0
    for proc in stack.procs.values():
        try:
            root = psutil.Process(proc.pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:  # a process that ended meanwhile: its parent counts it
            continue
    return total


def setup(work: Path, tree: Path = ROOT) -> dict[str, str]:
    (work / "state").mkdir(parents=True)
    config = work / "targets.yaml"
    config.write_text(textwrap.dedent(f"""\
        targets:
          bench:
            provider: {{type: simulated, options: {{state: "{work}/state/sim.db"}}}}
            desired: {ROOT}/include/desired/demo
            schedule: null
            policy: {{max_parallel: 4}}
            alerts: {{deadline: false}}
        """))
    env = {"RECONCILER_CONFIG": str(config), "RECONCILER_HOME": str(work / "state"),
           "RECONCILER_STORE_URL": f"sqlite:///{work}/state/state.db",
           # the tree's own package and plugin (ahead of the venv's editable install)
           "PYTHONPATH": f"{tree}/include{os.pathsep}{tree}/plugins",
           "AIRFLOW__CORE__DAGS_FOLDER": str(tree / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(tree / "plugins")}
    subprocess.run([sys.executable, "-m", "reconciler", "sim", "seed", "--target", "bench"],
                   check=True, capture_output=True, env={**os.environ, **env})
    return env


def cli_cycle(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "reconciler", "apply", "--target", "bench", "--yes"],
                   check=True, capture_output=True, env={**os.environ, **env})
    return time.perf_counter() - t0


def airflow_cycles(stack: AirflowStack, runs: int) -> tuple[list[float], list[float]]:
    walls, durations = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        run = stack.trigger("reconcile__bench")
        assert stack.wait_run("reconcile__bench", run) == "success"
        walls.append(time.perf_counter() - t0)
        info = stack.request("GET", f"/api/v2/dags/reconcile__bench/dagRuns/{run}")
        start, end = (datetime.fromisoformat(info[k]) for k in ("start_date", "end_date"))
        durations.append((end - start).total_seconds())
    return walls, durations


def measure(tree: Path, runs: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="cycle-overhead-"))
    env = setup(work, tree)
    cli = [cli_cycle(env) for _ in range(runs)]
    stack = AirflowStack(work / "airflow", extra_env=env, parallelism=4)
    stack.prepare()
    stack.start()
    try:
        stack.wait_healthy()
        stack.wait_dag("reconcile__bench")
        airflow_cycles(stack, 1)  # warm-up: first parse, first task processes
        cpu0 = stack_cpu_s(stack)
        t0 = time.perf_counter()
        walls, durations = airflow_cycles(stack, runs)
        elapsed = time.perf_counter() - t0
        cpu = stack_cpu_s(stack) - cpu0
    finally:
        stack.stop()
    return {"cli": statistics.median(cli), "wall": statistics.median(walls),
            "run": statistics.median(durations), "cpu": cpu / runs, "cpu_rate": cpu / elapsed}


def baseline_tree(rev: str) -> Path:
    where = Path(tempfile.mkdtemp(prefix="cycle-overhead-base-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
                   check=True, capture_output=True)
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure this commit (a temporary git worktree), same run")
    args = parser.parse_args()
    trees = [("now", ROOT)]
    base = baseline_tree(args.baseline) if args.baseline else None
    if base:
        trees.insert(0, (args.baseline, base))
    try:
        results = {name: measure(tree, args.runs) for name, tree in trees}
    finally:
        if base:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           capture_output=True)
    print(f"no-drift cycle, median of {args.runs} (CPU: the whole Airflow stack per cycle):")
    for name, r in results.items():
        print(f"  [{name}] CLI (reconcile apply, a fresh process): {r['cli']:.2f} s")
        print(f"  [{name}] Airflow, trigger to success (REST):    {r['wall']:.2f} s "
              f"({r['wall'] / r['cli']:.1f}x the CLI)")
        print(f"  [{name}] Airflow, run start to end:             {r['run']:.2f} s")
        print(f"  [{name}] Airflow CPU-seconds per cycle:         {r['cpu']:.2f} s "
              f"(the stack used {r['cpu_rate']:.2f} cores meanwhile)")
    if base:
        old, new = results[args.baseline], results["now"]
        print(f"  now / {args.baseline}: CLI {new['cli'] / old['cli']:.2f}x, "
              f"Airflow wall {new['wall'] / old['wall']:.2f}x, "
              f"CPU per cycle {new['cpu'] / old['cpu']:.2f}x")


if __name__ == "__main__":
    main()
