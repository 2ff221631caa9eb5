"""DAG parse cost, paid the way the dag-processor pays it (Airflow and our plugin pre-imported).

Prints the time to parse ``dags/`` with 1 and with 50 targets configured, per DAG, and the
ratio to a trivial one-task DAG file parsed in the same process. Asserts nothing.

    .venv/bin/python bench/dag_parse.py
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRIVIAL = """\
from datetime import datetime
from airflow.sdk import DAG, task
with DAG(dag_id="trivial", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
    @task
    def hello():
        return 1
    hello()
"""


def write_targets(folder: Path, n: int) -> Path:
    lines = ["targets:"]
    for i in range(n):
        lines.append(textwrap.indent(textwrap.dedent(f"""\
            t{i:03d}:
              provider: {{type: simulated, options: {{state: "{folder}/t{i}.db"}}}}
              desired: {ROOT}/include/desired/demo
              schedule: "*/5 * * * *"
              policy: {{max_parallel: 8, max_iterations: 3}}
            """), "  "))
    path = folder / f"targets-{n}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def best_parse_s(folder: Path, runs: int) -> tuple[float, int]:
    from airflow.dag_processing.dagbag import DagBag

    best, dags = float("inf"), 0
    for _ in range(runs):
        t0 = time.perf_counter()
        bag = DagBag(dag_folder=str(folder))
        best = min(best, time.perf_counter() - t0)
        dags = len(bag.dags)
        assert not bag.import_errors, bag.import_errors
    return best, dags


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="dag-parse-"))
    os.environ.update({"AIRFLOW_HOME": str(work / "airflow"), "RECONCILER_HOME": str(work),
                       "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    sys.path.insert(0, str(ROOT / "plugins"))
    logging.disable(logging.WARNING)
    import airflow.sdk  # noqa: F401  (the processor has Airflow imported already)

    import reconciler_airflow.factory  # noqa: F401  (pre-imported by the processor)

    trivial = work / "trivial"
    trivial.mkdir()
    (trivial / "trivial.py").write_text(TRIVIAL)
    base, _ = best_parse_s(trivial, 20)
    print(f"trivial one-task DAG file: {base * 1000:.2f} ms")
    for n in (1, 50):
        os.environ["RECONCILER_CONFIG"] = str(write_targets(work, n))
        total, dags = best_parse_s(ROOT / "dags", 5 if n > 1 else 20)
        per = total / dags
        print(f"{n:>3} target(s): {dags} DAGs in {total * 1000:.1f} ms = {per * 1000:.2f} ms per "
              f"DAG = {per / base:.1f}x the trivial file")
    print("target: <= 3x the trivial file per DAG")


if __name__ == "__main__":
    main()
