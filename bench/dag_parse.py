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


def best_parse_s(folder: Path, runs: int) -> tuple[float, int, int]:
    """Best wall time of ``runs`` DagBag fills of ``folder``, its DAG count and tasks per DAG."""
    from airflow.dag_processing.dagbag import DagBag

    best, dags, tasks = float("inf"), 0, 0
    for _ in range(runs):
        t0 = time.perf_counter()
        bag = DagBag(dag_folder=str(folder))
        best = min(best, time.perf_counter() - t0)
        assert not bag.import_errors, bag.import_errors
        dags, tasks = len(bag.dags), max(len(d.tasks) for d in bag.dags.values())
    return best, dags, tasks


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="dag-parse-"))
    os.environ.update({"AIRFLOW_HOME": str(work / "airflow"), "RECONCILER_HOME": str(work),
                       "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    sys.path.insert(0, str(ROOT / "plugins"))
    logging.disable(logging.WARNING)
    import airflow.sdk  # noqa: F401  (the processor has Airflow imported already)

    # The dag-processor's manager loads plugins/ at start, and plugins/reconciler_plugin.py
    # imports the factory; parsing children are forked from it (tests/dags checks the import).
    import reconciler_airflow.factory  # noqa: F401

    trivial = work / "trivial"
    trivial.mkdir()
    (trivial / "trivial.py").write_text(TRIVIAL)
    # the baseline is taken before and after the real DAGs (best of both), so a slow spell of
    # the machine does not flatter the ratio
    base = best_parse_s(trivial, 20)[0]
    results = []
    for n in (1, 50):
        os.environ["RECONCILER_CONFIG"] = str(write_targets(work, n))
        total, dags, tasks = best_parse_s(ROOT / "dags", 20 if n == 1 else 7)
        results.append((n, total, dags, tasks))
    base = min(base, best_parse_s(trivial, 20)[0])
    print(f"trivial one-task DAG file: {base * 1000:.2f} ms")
    for n, total, dags, tasks in results:
        per = total / dags
        print(f"{n:>3} target(s): {dags} DAGs of {tasks} tasks in {total * 1000:.1f} ms = "
              f"{per * 1000:.2f} ms per DAG = {per / base:.1f}x the trivial file")
    (_, one, _, _), (_, fifty, n50, _) = results
    print(f"fixed cost of the file (1 target minus one DAG of 50): "
          f"{(one - fifty / n50) * 1000:.2f} ms")
    print("target: <= 3x the trivial file per DAG")


if __name__ == "__main__":
    main()
