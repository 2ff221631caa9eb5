"""The compose deployment on a private Docker engine: images, start, converge, scale-out.

Same machinery as tests/system/test_compose_engine.py (a private dockerd, stand-in images,
docker-compose.yaml unchanged plus a targets-config override). Prints:

- images: built (cold: ``--cold`` uses an empty cache) or loaded from the cache, seconds;
- start-to-healthy: ``docker compose up --wait`` with 2 workers, seconds;
- converge: the demo targets (seeded demo AWS) triggered through REST, trigger to success;
- scale-out: 2,000 simulated creates (50 ms per call, batches of 50, pool of 16 slots) with
  1 worker container, then with 2 (``--scale airflow-worker=N``), each the first cycle of a
  target of its own (see bench/distributed.py for why), and the ratio.

    sudo .venv/bin/python bench/compose_demo.py [--cold] [--actions 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "include")]

SLOTS, LATENCY_S, BATCH = 16, 0.05, 50


def _config(into: Path, actions: int) -> Path:
    from reconciler.providers.simulated import generate_fleet

    into.mkdir()
    (into / "bench-desired").mkdir()
    fleet = generate_fleet(actions, random.Random(11))
    (into / "bench-desired" / "fleet.yaml").write_text("resources:\n" + "".join(
        f"  - {{kind: {k}, name: {n}, spec: {json.dumps(s)}}}\n" for k, n, s in fleet))
    extra = "".join(f"""
  bench{n}:
    provider:
      type: simulated
      options: {{state: "${{RECONCILER_HOME}}/bench{n}-sim.db", faults: {{latency_s: {LATENCY_S}}}}}
    desired: bench-desired
    schedule: null
    policy: {{max_parallel: {SLOTS}, batch_size: {BATCH}, max_delete_fraction: 0.5,
              cycle_deadline_seconds: 3600}}
    artifacts: "${{RECONCILER_HOME}}/artifacts/bench{n}"
    alerts: {{deadline: false}}
""" for n in (1, 2))
    (into / "targets.yaml").write_text((ROOT / "deploy/config/targets.yaml").read_text() + extra)
    into.chmod(0o755)
    return into


def _span(dep: object, dag: str, run: str) -> float:
    from tests.system.compose_deployment import Deployment

    assert isinstance(dep, Deployment)
    reply = dep.request("GET", f"/api/v2/dags/{dag}/dagRuns/{run}")
    start, end = (datetime.fromisoformat(reply[k].replace("Z", "+00:00"))
                  for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="build the images (empty cache)")
    parser.add_argument("--actions", type=int, default=2000)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="compose-bench-"))
    scratch.chmod(0o755)
    if args.cold:
        os.environ["RECONCILER_IMAGE_CACHE"] = str(scratch / "image-cache")
    from tests.system.compose_deployment import Deployment
    from tests.system.compose_images import ensure_images
    from tests.system.docker_engine import docker_engine

    with docker_engine() as engine:
        images = ensure_images(engine)
        print(f"images: {images.how} in {images.seconds:.0f} s", flush=True)
        dep = Deployment(scratch, engine, images.env(), 18094,
                         config=_config(scratch / "config", args.actions))
        try:
            started = time.monotonic()
            dep.up(workers=2)
            print(f"start-to-healthy (2 workers): {time.monotonic() - started:.0f} s", flush=True)
            dep.compose("run", "--rm", "--no-deps", "airflow-cli", "python", "-m",
                        "reconciler.embedded", "seed", "--endpoint", "http://moto:5000")
            for dag in ("reconcile__demo", "reconcile__aws_demo", "reconcile__bench1",
                        "reconcile__bench2"):
                dep.wait_dag(dag)
            started = time.monotonic()
            runs = {dag: dep.trigger(dag) for dag in ("reconcile__demo", "reconcile__aws_demo")}
            states = {dag: dep.wait_run(dag, run) for dag, run in runs.items()}
            print(f"converge demo + aws_demo (trigger to both done, incl. any scheduled run "
                  f"queued first): {time.monotonic() - started:.0f} s {states}", flush=True)
            spans = {}
            for workers, dag in ((1, "reconcile__bench1"), (2, "reconcile__bench2")):
                dep.up(workers=workers)
                run = dep.trigger(dag)
                state = dep.wait_run(dag, run, timeout_s=3600)
                spans[workers] = _span(dep, dag, run)
                print(f"{args.actions} actions, {workers} worker container(s): "
                      f"{spans[workers]:.0f} s ({state})", flush=True)
            print(f"speed-up 1 -> 2 workers: {spans[1] / spans[2]:.2f}x; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
        finally:
            dep.down()


if __name__ == "__main__":
    main()
