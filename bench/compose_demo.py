"""The compose deployment on a private Docker engine: images, start, converge, scale-out.

Same machinery as tests/system/test_compose_engine.py (a private dockerd, stand-in images,
docker-compose.yaml unchanged plus a targets-config override). Prints:

- images: built (cold: ``--cold`` uses an empty cache) or loaded from the cache, seconds;
- start-to-healthy: ``docker compose up --wait`` with 2 workers, seconds;
- converge: the demo targets (seeded demo AWS) triggered through REST, trigger to both done;
  then the same on the native twin of the compose topology in the same run (``scripts/cluster.py``:
  PostgreSQL + Redis on loopback, CeleryExecutor, api-server, scheduler, dag-processor,
  triggerer and 2 Celery workers of concurrency 4 as plain processes, ``moto_server`` as the
  demo AWS, the compose file's targets config ``deploy/config/targets.yaml``), and the ratio;
- scale-out: 2,000 simulated creates (50 ms per call, batches of 50, pool of 16 slots) with
  1 worker container, then with 2 (``--scale airflow-worker=N``), each the first cycle of a
  target of its own (see bench/distributed.py for why), and the ratio.

    sudo .venv/bin/python bench/compose_demo.py [--cold] [--actions 2000] [--skip-scale-out]
    .venv/bin/python bench/compose_demo.py --native-only    # the native half, no Docker

Both halves trigger the same way (unpause both DAGs, which also starts a scheduled run of each,
then POST a run of each) and poll every second; besides the wall time (clock started before the
unpause) each prints the API's own span, first run queued to last run ended.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "include")]

SLOTS, LATENCY_S, BATCH = 16, 0.05, 50
DEMOS = ("reconcile__demo", "reconcile__aws_demo")
WORKERS, CONCURRENCY = 2, 4  # docker-compose.yaml's default worker concurrency


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


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def converge(request: Callable[..., Any]) -> dict[str, Any]:
    """Unpause and trigger both demo DAGs through REST, wait for both runs: wall seconds from
    before the unpause, the API's span (first queued to last ended) and the runs' states."""
    started = time.monotonic()
    for dag in DEMOS:
        request("PATCH", f"/api/v2/dags/{dag}", {"is_paused": False})
    runs = {dag: str(request("POST", f"/api/v2/dags/{dag}/dagRuns",
                             {"logical_date": None, "conf": {}})["dag_run_id"])
            for dag in DEMOS}
    infos: dict[str, dict[str, Any]] = {}
    deadline = started + 900
    while len(infos) < len(runs):
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo runs not done after 900 s: {runs}, done: {list(infos)}")
        for dag, run in runs.items():
            if dag not in infos:
                info = request("GET", f"/api/v2/dags/{dag}/dagRuns/{run}")
                if info["state"] in ("success", "failed"):
                    infos[dag] = info
        time.sleep(1)
    wall = time.monotonic() - started
    span = (max(_ts(i["end_date"]) for i in infos.values())
            - min(_ts(i["queued_at"]) for i in infos.values())).total_seconds()
    return {"wall_s": wall, "span_s": span,
            "states": {dag: i["state"] for dag, i in infos.items()}}


def _report(where: str, result: dict[str, Any]) -> None:
    print(f"converge demo + aws_demo, {where}: trigger to both done {result['wall_s']:.1f} s "
          f"(API span, first queued to last ended: {result['span_s']:.1f} s) {result['states']}",
          flush=True)


def compose_half(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
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
            dep.up(workers=WORKERS)
            print(f"start-to-healthy ({WORKERS} workers): {time.monotonic() - started:.0f} s",
                  flush=True)
            dep.compose("run", "--rm", "--no-deps", "airflow-cli", "python", "-m",
                        "reconciler.embedded", "seed", "--endpoint", "http://moto:5000")
            for dag in (*DEMOS, "reconcile__bench1", "reconcile__bench2"):
                dep.wait_dag(dag)
            result = converge(dep.request)
            _report("compose", result)
            if not args.skip_scale_out:
                scale_out(dep, args.actions)
        finally:
            dep.down()
    return result


def scale_out(dep: Any, actions: int) -> None:
    spans = {}
    for workers, dag in ((1, "reconcile__bench1"), (2, "reconcile__bench2")):
        dep.up(workers=workers)
        run = dep.trigger(dag)
        state = dep.wait_run(dag, run, timeout_s=3600)
        spans[workers] = _span(dep, dag, run)
        print(f"{actions} actions, {workers} worker container(s): "
              f"{spans[workers]:.0f} s ({state})", flush=True)
    print(f"speed-up 1 -> 2 workers: {spans[1] / spans[2]:.2f}x; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)


def native_half(scratch: Path) -> dict[str, Any]:
    """The same two targets on the native CeleryExecutor cluster, moto's server on loopback
    seeded as the compose deployment's ``reconciler.embedded seed`` does; the demo fleet starts
    empty there as in the compose volume."""
    sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "bench")]
    from airflow_stack import free_port
    from cluster import Cluster

    from distributed import REDIS, claim_redis_db
    from reconciler.embedded import MotoProcess, seed_aws_demo

    moto = MotoProcess()
    url = moto.start()
    db, redis_client = claim_redis_db()
    session = uuid.uuid4().hex[:10]
    aws = {"AWS_ENDPOINT_URL": url, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
               {"conn_type": "aws", "extra": {"region_name": "us-east-1", "endpoint_url": url}})}
    cluster = Cluster(scratch / "native", airflow_db=f"reconciler_cbench_{session}_airflow",
                      state_db=f"reconciler_cbench_{session}_state", redis_url=f"{REDIS}/{db}",
                      port=free_port(), workers=WORKERS, concurrency=CONCURRENCY,
                      config=ROOT / "deploy" / "config" / "targets.yaml",
                      reconciler_home=scratch / "native" / "reconciler", parallelism=32,
                      extra_env={**aws, "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"})
    try:
        seed_aws_demo(url)
        started = time.monotonic()
        cluster.start()
        print(f"native start-to-healthy ({WORKERS} workers, incl. db migrate): "
              f"{time.monotonic() - started:.0f} s", flush=True)
        for dag in DEMOS:
            cluster.stack.wait_dag(dag)
        result = converge(cluster.stack.request)
        _report("native (CeleryExecutor, processes)", result)
    finally:
        cluster.stop()
        cluster.drop_databases()
        redis_client.flushdb()
        redis_client.close()
        moto.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="build the images (empty cache)")
    parser.add_argument("--actions", type=int, default=2000)
    parser.add_argument("--skip-scale-out", action="store_true",
                        help="only the images, start and converge figures")
    parser.add_argument("--native-only", action="store_true",
                        help="only the native converge (no Docker, no root)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="compose-bench-"))
    scratch.chmod(0o755)
    compose = None if args.native_only else compose_half(args, scratch)
    native = native_half(scratch)
    if compose:
        print(f"converge, compose / native: wall {compose['wall_s'] / native['wall_s']:.2f}x, "
              f"API span {compose['span_s'] / native['span_s']:.2f}x; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
