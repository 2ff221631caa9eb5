"""Scale-out benchmark: the same 2,000-action plan on 1 Celery worker, then on 2.

The native cluster of ``scripts/cluster.py`` (PostgreSQL, Redis, api-server, scheduler,
dag-processor, triggerer, Celery workers) with private databases and Redis DB. The target's pool
has 16 slots (policy.max_parallel); the simulated provider sleeps 50 ms in every API call. The
fleet starts empty and the desired state holds 2,000 workloads, so every run plans the same
2,000 creates (one wave, cut into batches). Each run is triggered through the REST API.

Prints, per worker count: the run's wall time (trigger to success), the actuation span (first
batch queued to last batch done), batches per worker; then the speed-up. Asserts nothing.

    .venv/bin/python bench/distributed.py [--actions 2000] [--concurrency 2] [--batch-size 50]
"""

from __future__ import annotations

import argparse
import json
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

TARGET, DAG = "bench", "reconcile__bench"
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


def write_world(root: Path, actions: int, batch_size: int) -> Path:
    from reconciler.providers.simulated import generate_fleet

    fleet = [(k, n, s) for k, n, s in generate_fleet(actions * 5 // 4, _rng())
             if k == "sim.Workload"][:actions]
    (root / "desired").mkdir()
    lines = ["resources:"] + [f"  - {{kind: {k}, name: {n}, spec: {json.dumps(s)}}}"
                              for k, n, s in fleet]
    (root / "desired" / "fleet.yaml").write_text("\n".join(lines) + "\n")
    config = root / "targets.yaml"
    config.write_text(f"""\
targets:
  {TARGET}:
    provider:
      type: simulated
      options: {{state: "{root}/state/bench-sim.db", faults: {{latency_s: {LATENCY_S}}}}}
    desired: desired
    schedule: null
    policy: {{max_parallel: {SLOTS}, batch_size: {batch_size}, max_delete_fraction: 1.0,
              cycle_deadline_seconds: 3600, sense_deadline_seconds: 300}}
    alerts: {{deadline: false}}
    airflow: {{retries: 2, retry_delay_seconds: 1}}
""")
    return config


def _rng() -> Any:
    import random

    return random.Random(2000)


def empty_fleet(root: Path) -> None:
    from reconciler.providers.simulated import SimulatedProvider

    with SimulatedProvider(root / "state" / "bench-sim.db") as sim:
        sim.table.replace_all([])


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def measure(cluster: Cluster) -> dict[str, Any]:
    """One full run on an empty fleet: wall time, actuation span, batches per worker."""
    stack = cluster.stack
    started = time.monotonic()
    run = stack.trigger(DAG)
    state = stack.wait_run(DAG, run, timeout_s=3600)
    wall = time.monotonic() - started
    tis = [t for t in stack.task_instances(DAG, run) if t["task_id"] == "pass_1.actuate"]
    span = (max(_ts(t["end_date"]) for t in tis)
            - min(_ts(t["queued_when"] or t["start_date"]) for t in tis)).total_seconds()
    workers = Counter(str(t["hostname"]).split("@")[0] for t in tis)
    return {"state": state, "wall_s": wall, "actuate_s": span, "batches": len(tis),
            "per_worker": dict(sorted(workers.items()))}


def run_config(cluster: Cluster, root: Path, workers: int, repeat: int) -> dict[str, Any]:
    while cluster.workers < workers:
        cluster.workers += 1
        cluster.stack.start(cluster.worker(cluster.workers))
    cluster.wait_workers()
    runs = []
    for _ in range(repeat):
        empty_fleet(root)
        runs.append(measure(cluster))
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
    config = write_world(root, args.actions, args.batch_size)
    db, redis_client = claim_redis_db()
    session = uuid.uuid4().hex[:10]
    cluster = Cluster(root / "cluster", airflow_db=f"reconciler_bench_{session}_airflow",
                      state_db=f"reconciler_bench_{session}_state", redis_url=f"{REDIS}/{db}",
                      port=free_port(), workers=1, concurrency=args.concurrency, config=config,
                      reconciler_home=root / "state", parallelism=32)
    try:
        print(f"starting the cluster in {root} ...", flush=True)
        cluster.start()
        cluster.stack.wait_dag(DAG)
        empty_fleet(root)  # warm-up: one cycle through every task on worker 1
        measure(cluster)
        results = [run_config(cluster, root, n, args.repeat) for n in (1, 2)]
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
