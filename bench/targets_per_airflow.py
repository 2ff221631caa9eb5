"""Targets per Airflow: how many simulated targets on a 5-minute schedule one single-machine
Airflow (``make demo``'s topology) keeps up with, for this tree and a baseline commit, in the
same run.

For each tree and each N: a targets config with N simulated targets (each seeded to its desired
state, so every cycle is a no-drift cycle), a fresh Airflow (api-server, scheduler,
dag-processor, triggerer; LocalExecutor, parallelism 4, SQLite — as ``make demo`` starts it),
one warm-up cycle of one target, the stack's idle CPU rate, then one cycle of every target
triggered at once (the worst case of a 5-minute schedule: the per-target jitter only spreads
them). It records the CPU-seconds the whole stack spent (every component and every task process,
reaped children included) and the wall time until the last of the N runs ended.

N_max is the largest N whose cycles fit the interval's CPU budget on this machine:
``N * cpu_per_cycle(N) + idle_rate(N) * interval <= interval * cores * utilisation``, with
cpu_per_cycle and idle_rate fitted as lines in N over the measured Ns (both grow with N when
every task process parses every target's DAG). The simple ``interval * cores * utilisation /
cpu_per_cycle`` at each measured N is printed beside it. Prints figures; asserts nothing.

    .venv/bin/python bench/targets_per_airflow.py [--quick] [--baseline 4a514f8] [--ns 1 4 8 16]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import AirflowStack  # noqa: E402

INTERVAL_S = 300
PARALLELISM = 4  # make demo's


@dataclass(frozen=True)
class Point:
    """One tree at one N: the all-at-once cycle's figures."""

    n: int
    cpu_per_cycle: float  # stack CPU-seconds over the burst, less the idle rate, per cycle
    idle_rate: float  # stack CPU-seconds per second with no run in flight
    wall_s: float  # first trigger to the last run's end
    slowest_run_s: float  # the longest single run (start to end)
    succeeded: int
    by_component: dict[str, float]


def stack_class(tree: Path) -> type[AirflowStack]:
    """The tree's own ``AirflowStack``: the topology's settings (scripts/airflow_stack.py) are
    part of what is compared, so a baseline runs with the settings it shipped."""
    spec = importlib.util.spec_from_file_location(f"airflow_stack_{abs(hash(tree))}",
                                                  tree / "scripts" / "airflow_stack.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    cls: type[AirflowStack] = module.AirflowStack
    return cls


def component_cpu(stack: AirflowStack) -> dict[str, float]:
    """CPU-seconds so far per component, its descendants (task processes) included."""
    import psutil

    out: dict[str, float] = {}
    for name, proc in stack.procs.items():
        total = 0.0
        try:
            root = psutil.Process(proc.pid)
            for p in [root, *root.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                except psutil.Error:  # ended meanwhile: its parent counts it once reaped
                    continue
                total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
        out[name] = total
    return out


def write_targets(work: Path, tree: Path, n: int) -> tuple[dict[str, str], list[str]]:
    (work / "state").mkdir(parents=True)
    names = [f"t{i:03d}" for i in range(n)]
    body = "".join(textwrap.dedent(f"""\
          {name}:
            provider: {{type: simulated, options: {{state: "{work}/state/{name}-sim.db"}}}}
            desired: {tree}/include/desired/demo
            schedule: null
            policy: {{max_parallel: 4}}
            alerts: {{deadline: false}}
        """) for name in names)
    config = work / "targets.yaml"
    config.write_text("targets:\n" + textwrap.indent(body, "  "))
    env = {"RECONCILER_CONFIG": str(config), "RECONCILER_HOME": str(work / "state"),
           "RECONCILER_STORE_URL": f"sqlite:///{work}/state/state.db",
           "PYTHONPATH": f"{tree}/include{os.pathsep}{tree}/plugins",
           "AIRFLOW__CORE__DAGS_FOLDER": str(tree / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(tree / "plugins")}
    return env, names


def seed(env: dict[str, str], names: list[str]) -> None:
    def one(name: str) -> None:
        subprocess.run([sys.executable, "-m", "reconciler", "sim", "seed", "--target", name],
                       check=True, capture_output=True, env={**os.environ, **env})

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, names))


def trigger(stack: AirflowStack, dag: str) -> str:
    """Trigger under a fixed run id: a POST that timed out while SQLite was busy may still have
    created the run, and retrying it then answers 409 instead of queueing a second cycle."""
    run_id = "bench"
    for attempt in range(5):
        try:
            stack.request("POST", f"/api/v2/dags/{dag}/dagRuns",
                          {"dag_run_id": run_id, "logical_date": None, "conf": {}})
            return run_id
        except RuntimeError as exc:
            if ": 409 " in str(exc):
                return run_id
            if attempt == 4:
                raise
        except TimeoutError:
            if attempt == 4:
                raise
        time.sleep(2)
    return run_id


def wait_all(stack: AirflowStack, runs: dict[str, str], timeout_s: float) -> dict[str, str]:
    """Each run's final state (``timeout`` for one still going after ``timeout_s``)."""
    states: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while len(states) < len(runs) and time.monotonic() < deadline:
        for dag, run in runs.items():
            if dag in states:
                continue
            try:
                state = stack.request("GET", f"/api/v2/dags/{dag}/dagRuns/{run}")["state"]
            except (OSError, RuntimeError):  # the api-server stalled on a busy SQLite: ask again
                continue
            if state in ("success", "failed"):
                states[dag] = str(state)
        time.sleep(2)
    return {dag: states.get(dag, "timeout") for dag in runs}


def run_span(stack: AirflowStack, runs: dict[str, str]) -> tuple[float, float]:
    """(first queued to last end, the longest start-to-end) from Airflow's own timestamps."""
    infos = [stack.request("GET", f"/api/v2/dags/{dag}/dagRuns/{run}")
             for dag, run in runs.items()]
    ended = [i for i in infos if i["end_date"]]
    if not ended:
        return float("nan"), float("nan")
    ts = datetime.fromisoformat
    span = max(ts(i["end_date"]) for i in ended) - min(ts(i["queued_at"]) for i in infos)
    longest = max((ts(i["end_date"]) - ts(i["start_date"])).total_seconds() for i in ended)
    return span.total_seconds(), longest


def measure(tree: Path, n: int, idle_s: float) -> Point:
    work = Path(tempfile.mkdtemp(prefix=f"targets-per-airflow-{n}-"))
    env, names = write_targets(work, tree, n)
    seed(env, names)
    stack = stack_class(tree)(work / "airflow", extra_env=env, parallelism=PARALLELISM)
    stack.prepare()
    stack.start()
    try:
        stack.wait_healthy()
        for name in names:
            stack.wait_dag(f"reconcile__{name}", timeout_s=300)
        warm = f"reconcile__{names[0]}"  # first task processes, the store's first cycle
        assert stack.wait_run(warm, stack.trigger(warm), timeout_s=600) == "success"
        c0, t0 = component_cpu(stack), time.perf_counter()
        time.sleep(idle_s)
        c1, t1 = component_cpu(stack), time.perf_counter()
        idle_rate = (sum(c1.values()) - sum(c0.values())) / (t1 - t0)
        runs = {f"reconcile__{name}": trigger(stack, f"reconcile__{name}") for name in names}
        states = wait_all(stack, runs, timeout_s=3 * INTERVAL_S)
        c2, t2 = component_cpu(stack), time.perf_counter()
        span, longest = run_span(stack, runs)
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    burst = sum(c2.values()) - sum(c1.values()) - idle_rate * (t2 - t1)
    return Point(n=n, cpu_per_cycle=burst / n, idle_rate=idle_rate, wall_s=span,
                 slowest_run_s=longest,
                 succeeded=sum(s == "success" for s in states.values()),
                 by_component={k: (c2[k] - c1[k]) / n for k in c2})


def line(points: list[Point], y: str) -> tuple[float, float]:
    """Least-squares (intercept, slope) of ``y`` against N; flat through one point."""
    xs = [p.n for p in points]
    ys = [getattr(p, y) for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (v - my) for x, v in zip(xs, ys, strict=True))
    slope = 0.0 if sxx == 0 else max(0.0, sxy / sxx)
    return my - slope * mx, slope


def n_max(points: list[Point], budget: float) -> int:
    """The largest N whose cycles and the idle stack fit the interval's CPU budget."""
    (a, b), (c, d) = line(points, "cpu_per_cycle"), line(points, "idle_rate")
    n = 0
    while n < 100_000 and (n + 1) * (a + b * (n + 1)) + (c + d * (n + 1)) * INTERVAL_S <= budget:
        n += 1
    return n


def baseline_tree(rev: str) -> Path:
    """The commit's files in a temporary directory (``git archive``: no worktree to clean up)."""
    where = Path(tempfile.mkdtemp(prefix="targets-per-airflow-base-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


HEADER = (f"{'tree':>9} {'N':>4} {'ok':>5} {'wall s':>7} {'slowest':>8} {'CPU-s/cycle':>12} "
          f"{'idle CPU/s':>10} {'in 300 s':>8} {'N_max@N':>8}  CPU-s/cycle by component")


def row(name: str, p: Point, budget: float) -> str:
    inside = "yes" if p.succeeded == p.n and p.wall_s <= INTERVAL_S else "no"
    comps = ", ".join(f"{k.split()[0]} {v:.2f}" for k, v in p.by_component.items())
    return (f"{name:>9} {p.n:>4} {p.succeeded:>2}/{p.n:<2} {p.wall_s:>7.1f} "
            f"{p.slowest_run_s:>8.1f} {p.cpu_per_cycle:>12.2f} {p.idle_rate:>10.3f} "
            f"{inside:>8} {int(budget // p.cpu_per_cycle):>8}  {comps}")


def report(results: dict[str, list[Point]], budget: float, cores: int) -> None:
    print(f"\ntargets per Airflow: simulated targets, no drift, all N triggered at once; "
          f"interval {INTERVAL_S} s, {cores} cores, budget {budget:.0f} CPU-s per interval")
    print(HEADER)
    for name, points in results.items():
        for p in points:
            print(row(name, p, budget))
    maxima = {name: n_max(points, budget) for name, points in results.items() if points}
    for name, points in results.items():
        (a, b), (c, d) = line(points, "cpu_per_cycle"), line(points, "idle_rate")
        print(f"  [{name}] CPU-s per cycle ~ {a:.2f} + {b:.3f} N; idle CPU/s ~ {c:.3f} + "
              f"{d:.4f} N; N_max = {maxima[name]}")
    if len(maxima) == 2:
        (old, base), (_, now) = maxima.items()
        pairs = {p.n: p for p in results[old]}
        same = [(pairs[p.n], p) for p in results["now"] if p.n in pairs]
        ratios = ", ".join(f"N={b.n} {n.cpu_per_cycle / b.cpu_per_cycle:.2f}x" for b, n in same)
        print(f"  now / {old}: N_max {now / max(base, 1):.2f}x ({base} -> {now}); "
              f"CPU-s per cycle {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REV", default="4a514f8",
                        help="measure this commit too (exported with git archive), same run; "
                             "'' for this tree only")
    parser.add_argument("--ns", type=int, nargs="+", help="target counts (default 1 4 8 16)")
    parser.add_argument("--quick", action="store_true", help="N = 2 and 8, a shorter idle window")
    parser.add_argument("--utilisation", type=float, default=0.75,
                        help="share of the cores the cycles may use (default 0.75)")
    args = parser.parse_args()
    ns = args.ns or ([2, 8] if args.quick else [1, 4, 8, 16])
    idle_s = 35.0 if args.quick else 65.0  # spans a dag-processor re-parse (every 30 s)
    cores = os.cpu_count() or 1
    trees = [("now", ROOT)]
    base = baseline_tree(args.baseline) if args.baseline else None
    if base:
        trees.insert(0, (args.baseline, base))
    budget = INTERVAL_S * cores * args.utilisation
    results: dict[str, list[Point]] = {name: [] for name, _ in trees}
    print(HEADER, flush=True)
    for n in ns:  # trees alternate per N, so load drift on a shared machine hits both
        for name, tree in trees:
            try:
                point = measure(tree, n, idle_s)
            except (RuntimeError, TimeoutError, AssertionError) as exc:
                print(f"{name:>9} {n:>4} failed: {str(exc)[:300]}", flush=True)
                continue
            results[name].append(point)
            print(row(name, point, budget), flush=True)
    if base:
        shutil.rmtree(base, ignore_errors=True)
    report({k: v for k, v in results.items() if v}, budget, cores)


if __name__ == "__main__":
    main()
