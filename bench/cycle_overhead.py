"""Orchestration overhead: a no-drift cycle under Airflow versus the same cycle through the CLI.

Airflow runs as ``airflow standalone`` would (api-server, scheduler, dag-processor, triggerer,
LocalExecutor, SQLite), each component started separately so it can be stopped by PID.
Prints wall times and the ratio; asserts nothing.

    .venv/bin/python bench/cycle_overhead.py [--runs 3]
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


def setup(work: Path) -> dict[str, str]:
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
           "RECONCILER_STORE_URL": f"sqlite:///{work}/state/state.db"}
    os.environ.update(env)
    subprocess.run([sys.executable, "-m", "reconciler", "sim", "seed", "--target", "bench"],
                   check=True, capture_output=True)
    return env


def cli_cycle() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "reconciler", "apply", "--target", "bench"],
                   check=True, capture_output=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cycle-overhead-"))
    env = setup(work)
    cli = [cli_cycle() for _ in range(args.runs)]
    stack = AirflowStack(work / "airflow", extra_env=env, parallelism=4)
    stack.prepare()
    stack.start()
    try:
        stack.wait_healthy()
        stack.wait_dag("reconcile__bench")
        walls, durations = airflow_cycles(stack, args.runs)
    finally:
        stack.stop()
    c, w, d = (statistics.median(x) for x in (cli, walls, durations))
    print(f"no-drift cycle, median of {args.runs}:")
    print(f"  CLI (reconcile apply, a fresh process each time): {c:.2f} s")
    print(f"  Airflow, trigger to success (REST):                {w:.2f} s  ({w / c:.1f}x the CLI)")
    print(f"  Airflow, run start to end:                         {d:.2f} s  ({d / c:.1f}x the CLI)")


if __name__ == "__main__":
    main()
