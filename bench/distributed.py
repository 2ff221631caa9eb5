"""Scale-out benchmark: the same 2,000-action plan on 1 Celery worker, then on 2.

The native cluster of ``scripts/cluster.py`` (PostgreSQL, Redis, api-server, scheduler,
dag-processor, triggerer, Celery workers) with private databases and Redis DB. Each target's
pool has 16 slots (policy.max_parallel); the simulated provider sleeps 50 ms in every API call.
The desired state holds 2,000 workloads and every run is the first cycle of a target of its own
(its own DAG, pool and simulated fleet, which starts empty), so every run plans the same 2,000
creates (one wave, cut into batches). Each run is triggered through the REST API.

Not one target whose fleet is emptied between runs: Reconciler doubts a kind that lists empty
right after a cycle that listed it full (``core.sense``: a sudden empty listing is more likely an
outage than 2,000 deletions), so that run waits out its sense deadline, blocks every change and
records a failed cycle; its mapped ``actuate`` never expands, it is skipped (by its trigger rule,
or with no dates at all when a plan maps to zero batches: Airflow's ``TaskMap.expand_mapped_task``
sets the unexpanded instance SKIPPED without a start or end date). Each measured run is checked
(run succeeded, every batch succeeded, the fleet holds every desired workload) and a run that is
not a full actuation stops the bench with its task instances listed, instead of a time for it.

Prints, per worker count: the run's wall time (trigger to success), the actuation span (first
batch queued to last batch done), batches per worker; then the speed-up and the load average.

    .venv/bin/python bench/distributed.py [--actions 2000] [--concurrency 2] [--batch-size 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import free_port  # noqa: E402
from cluster import Cluster  # noqa: E402

SLOTS, LATENCY_S = 16, 0.05
REDIS = "redis://127.0.0.1:6379"


def claim_redis_db() -> tuple[int, Any]:
    import redis

    token = uuid.uuid4().hex
    for db in range(15, 0, -1):
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        if client.set("reconciler:bench-claim", token, nx=True, ex=7200) and client.dbsize() == 1:
            return db, client
        client.close()
    raise SystemExit("no free Redis database (1-15) on 127.0.0.1:6379")


def labels(repeat: int) -> list[str]:
    """One target per measured run (plus the warm-up): each run is its target's first cycle."""
    return ["warmup"] + [f"w{n}_r{r}" for n in (1, 2) for r in range(1, repeat + 1)]


def write_world(root: Path, actions: int, batch_size: int, targets: list[str]) -> Path:
    from reconciler.providers.simulated import generate_fleet

    fleet = [(k, n, s) for k, n, s in generate_fleet(actions * 5 // 4, _rng())
             if k == "sim.Workload"][:actions]
    if len(fleet) < actions:
        raise SystemExit(f"the generator made only {len(fleet)} workloads")
    (root / "desired").mkdir()
    lines = ["resources:"] + [f"  - {{kind: {k}, name: {n}, spec: {json.dumps(s)}}}"
                              for k, n, s in fleet]
    (root / "desired" / "fleet.yaml").write_text("\n".join(lines) + "\n")
    config = root / "targets.yaml"
    config.write_text("targets:\n" + "".join(f"""\
  bench_{label}:
    provider:
      type: simulated
      options: {{state: "{fleet_db(root, label)}", faults: {{latency_s: {LATENCY_S}}}}}
    desired: desired
    schedule: null
    policy: {{max_parallel: {SLOTS}, batch_size: {batch_size}, max_delete_fraction: 1.0,
              cycle_deadline_seconds: 3600, sense_deadline_seconds: 300}}
    alerts: {{deadline: false}}
    airflow: {{retries: 2, retry_delay_seconds: 1}}
""" for label in targets))
    for label in targets:  # every fleet starts empty
        empty_fleet(fleet_db(root, label))
    return config


def _rng() -> Any:
    import random

    return random.Random(2000)


def fleet_db(root: Path, label: str) -> Path:
    return root / "state" / f"bench_{label}-sim.db"


def empty_fleet(path: Path) -> None:
    from reconciler.providers.simulated import SimulatedProvider

    with SimulatedProvider(path) as sim:
        sim.table.replace_all([])


def fleet_size(path: Path) -> int:
    from reconciler.providers.simulated import SimulatedProvider

    with SimulatedProvider(path) as sim:
        return sim.count("sim.Workload")


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class NotAFullActuation(RuntimeError):
    """A measured run that did not apply the whole plan: its time would measure something else."""


def check_run(state: str, tis: list[dict[str, Any]], fleet: int, actions: int) -> None:
    """The run succeeded, its pass-1 batches all ran and succeeded, and the fleet is complete.
    Otherwise raise with every task instance's state (a skipped, unexpanded ``actuate`` at map
    index -1 has no dates when its plan mapped to zero batches)."""
    batches = [t for t in tis if t["task_id"] == "pass_1.actuate"]
    problems = []
    if state != "success":
        problems.append(f"run {state}")
    if not batches or any(t["state"] != "success" or t["map_index"] < 0
                          or not (t["end_date"] and (t["queued_when"] or t["start_date"]))
                          for t in batches):
        problems.append("not every pass_1.actuate batch ran and succeeded")
    if fleet != actions:
        problems.append(f"the fleet holds {fleet} of {actions} workloads")
    if problems:
        rows = "\n".join(f"  {t['task_id']}[{t['map_index']}] {t['state']} try {t['try_number']} "
                         f"queued {t['queued_when']} start {t['start_date']} end {t['end_date']}"
                         for t in sorted(tis, key=lambda t: (t["task_id"], t["map_index"])))
        raise NotAFullActuation("; ".join(problems) + "\n" + rows)


def measure(cluster: Cluster, root: Path, label: str, actions: int) -> dict[str, Any]:
    """Target ``label``'s first run, on its empty fleet: wall time, actuation span, batches per
    worker."""
    stack, dag = cluster.stack, f"reconcile__bench_{label}"
    started = time.monotonic()
    run = stack.trigger(dag)
    state = stack.wait_run(dag, run, timeout_s=3600)
    wall = time.monotonic() - started
    tis = stack.task_instances(dag, run)
    check_run(state, tis, fleet_size(fleet_db(root, label)), actions)
    tis = [t for t in tis if t["task_id"] == "pass_1.actuate"]
    span = (max(_ts(t["end_date"]) for t in tis)
            - min(_ts(t["queued_when"] or t["start_date"]) for t in tis)).total_seconds()
    workers = Counter(str(t["hostname"]).split("@")[0] for t in tis)
    return {"state": state, "wall_s": wall, "actuate_s": span, "batches": len(tis),
            "per_worker": dict(sorted(workers.items())), "load1": os.getloadavg()[0]}


def run_config(cluster: Cluster, root: Path, workers: int, repeat: int,
               actions: int) -> dict[str, Any]:
    while cluster.workers < workers:
        cluster.workers += 1
        cluster.stack.start(cluster.worker(cluster.workers))
    cluster.wait_workers()
    runs = []
    for r in range(1, repeat + 1):
        runs.append(measure(cluster, root, f"w{workers}_r{r}", actions))
        print(f"  {workers} worker(s): {json.dumps(runs[-1])}", flush=True)
    return {"workers": workers, "runs": runs,
            "wall_s": statistics.median(r["wall_s"] for r in runs),
            "actuate_s": statistics.median(r["actuate_s"] for r in runs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2, help="per worker")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    (root / "state").mkdir()
    targets = labels(args.repeat)
    config = write_world(root, args.actions, args.batch_size, targets)
    db, redis_client = claim_redis_db()
    session = uuid.uuid4().hex[:10]
    cluster = Cluster(root / "cluster", airflow_db=f"reconciler_bench_{session}_airflow",
                      state_db=f"reconciler_bench_{session}_state", redis_url=f"{REDIS}/{db}",
                      port=free_port(), workers=1, concurrency=args.concurrency, config=config,
                      reconciler_home=root / "state", parallelism=32)
    try:
        print(f"starting the cluster in {root} ...", flush=True)
        cluster.start()
        for label in targets:
            cluster.stack.wait_dag(f"reconcile__bench_{label}")
        # warm-up: one cycle through every task on worker 1
        print(f"  warm-up: {json.dumps(measure(cluster, root, 'warmup', args.actions))}",
              flush=True)
        results = [run_config(cluster, root, n, args.repeat, args.actions) for n in (1, 2)]
    finally:
        cluster.stop()
        cluster.drop_databases()
        redis_client.flushdb()
        redis_client.close()
    one, two = results
    print(f"\n{args.actions} actions, pool slots {SLOTS}, {LATENCY_S * 1000:.0f} ms API latency, "
          f"batch size {args.batch_size}, worker concurrency {args.concurrency}")
    print(f"{'workers':>8} {'run wall s':>11} {'actuation s':>12}")
    for r in results:
        print(f"{r['workers']:>8} {r['wall_s']:>11.1f} {r['actuate_s']:>12.1f}")
    print(f"speed-up: run {one['wall_s'] / two['wall_s']:.2f}x, "
          f"actuation {one['actuate_s'] / two['actuate_s']:.2f}x (target >= 1.7x)")
    loads = [r["load1"] for c in results for r in c["runs"]]
    print(f"1-minute load average at the end of each run: {min(loads):.1f}-{max(loads):.1f} "
          f"on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
