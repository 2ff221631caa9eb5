"""``reconcile import`` then ``reconcile plan`` on 1,000 mixed AWS resources (moto's server).

The fleet (``--instances`` EC2 instances, ``--groups`` Auto Scaling groups, ``--clusters`` ECS
clusters with ``--services`` ECS services spread over them: 1,000 by default) is built first
by Reconciler itself, so it carries the bench target's ownership tags. Then, timed, through
the CLI's own entry point in this process (``reconciler.cli.main``):

- ``reconcile import --target bench --out <desired>/fleet.yaml`` (sense + YAML);
- ``reconcile plan --target bench --json`` over the imported file (the round trip), whose
  change count must be 0 (exit 0, ``in_sync``);
- and, as the baseline, a plain sense of the same fleet (the observation both of them start
  with), so the ratios say what import and plan add to it.

Prints the times, the ratios and the change count. Asserts only that the round trip held.

    .venv/bin/python bench/import_roundtrip.py [--instances 600] [--groups 100]
                                               [--clusters 100] [--services 200]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]

from reconciler import cli  # noqa: E402
from reconciler.catalogue import REGISTRY, rules_for  # noqa: E402
from reconciler.core.gate import BasicGate  # noqa: E402
from reconciler.core.loop import CycleDeps, CycleRequest, run_cycle  # noqa: E402
from reconciler.core.model import DesiredResource, DesiredState, ResourceKey  # noqa: E402
from reconciler.core.policy import Policy  # noqa: E402
from reconciler.core.sense import SenseOptions, sense  # noqa: E402
from reconciler.embedded import MotoProcess  # noqa: E402
from reconciler.orchestration.runtime import SystemClock  # noqa: E402
from reconciler.providers.aws import AwsProvider  # noqa: E402
from reconciler.testing import MemoryStore, RecordingSink  # noqa: E402

AMI, TARGET, TEMPLATE = "ami-0c02fb55956c7d316", "bench", "bench-nodes"
KINDS = ("autoscaling.Group", "ec2.Instance", "ecs.Cluster", "ecs.Service")
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)
for _var in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)


def res(kind: str, name: str, **spec: Any) -> DesiredResource:
    normal = REGISTRY[kind].spec_model.model_validate(spec).model_dump(mode="json")
    return DesiredResource(key=ResourceKey(kind=kind, name=name), spec=normal)


def fleet(args: argparse.Namespace) -> list[DesiredResource]:
    out = [
        res(
            "ec2.Instance",
            f"node-{i:04d}",
            image_id=AMI,
            instance_type=("t3.micro", "t3.small")[i % 2],
            tags={"team": f"t{i % 7}"},
        )
        for i in range(args.instances)
    ]
    out += [
        res(
            "autoscaling.Group",
            f"pool-{i:03d}",
            launch_template={"name": TEMPLATE},
            min_size=0,
            max_size=4,
            desired_capacity=0,
            availability_zones=["us-east-1a"],
            tags={"team": f"t{i % 7}"},
        )
        for i in range(args.groups)
    ]
    out += [
        res("ecs.Cluster", f"apps-{i:03d}", tags={"env": "bench"}) for i in range(args.clusters)
    ]
    for i in range(args.services):
        parent = f"apps-{i % args.clusters:03d}"
        containers = [
            {
                "name": "web",
                "image": f"nginx:1.{27 + i % 2}",
                "memory": 256,
                "port_mappings": [{"container_port": 80}],
            }
        ]
        svc = res(
            "ecs.Service",
            f"svc-{i:03d}",
            cluster=parent,
            desired_count=1 + i % 3,
            containers=containers,
            tags={"team": f"t{i % 7}"},
        )
        out.append(
            svc.model_copy(update={"depends_on": (ResourceKey(kind="ecs.Cluster", name=parent),)})
        )
    return out


def build(url: str, desired: list[DesiredResource]) -> float:
    provider = AwsProvider(TARGET, {"endpoint_url": url, "emulator": True})
    provider.client("ec2").create_launch_template(
        LaunchTemplateName=TEMPLATE, LaunchTemplateData={"ImageId": AMI}
    )
    state = DesiredState(
        resources=tuple(desired), version="build", source_uri="bench", loaded_at=SystemClock().now()
    )
    req = CycleRequest(
        target=TARGET,
        desired=state,
        kinds=KINDS,
        manual=True,
        policy=Policy(max_parallel=16, cycle_deadline_seconds=3600, sense_deadline_seconds=600),
        correlation_id="bench-build",
    )
    deps = CycleDeps(
        provider=provider,
        store=MemoryStore(),
        events=RecordingSink(),
        clock=SystemClock(),
        gate=BasicGate(),
        rules=rules_for(list(KINDS)),
        rng=random.Random(0),
    )
    t0 = time.perf_counter()
    report = run_cycle(req, deps)
    assert report.outcome.converged, report.outcome.error
    return time.perf_counter() - t0


def config(tmp: Path, url: str) -> Path:
    (tmp / "desired").mkdir()
    path = tmp / "targets.yaml"
    path.write_text(
        "targets:\n"
        f"  {TARGET}:\n"
        f'    provider: {{type: aws, options: {{endpoint_url: "{url}", emulator: true,'
        " read_timeout_s: 300}}\n"
        "    desired: desired\n"
        "    policy: {adopt: true, sense_deadline_seconds: 600, cycle_deadline_seconds: 3600}\n"
    )
    return path


def timed_cli(*argv: str) -> tuple[float, float, int, str]:
    """Wall and this process's CPU seconds (moto's are its own), exit code, stdout."""
    out = io.StringIO()
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return time.perf_counter() - t0, time.process_time() - c0, code, out.getvalue()


def plain_sense(url: str) -> tuple[float, float]:
    provider = AwsProvider(TARGET, {"endpoint_url": url, "emulator": True, "read_timeout_s": 300})
    t0, c0 = time.perf_counter(), time.process_time()
    snap = sense(
        provider,
        KINDS,
        target=TARGET,
        correlation_id="bench-sense",
        clock=SystemClock(),
        options=SenseOptions(deadline_s=600),
    )
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert all(s.complete for s in snap.kinds.values()), snap.kinds
    return elapsed, cpu


def round_trip(common: list[str], out: Path) -> dict[str, Any]:
    """One timed ``import`` then ``plan``; the plan's change count."""
    out.unlink(missing_ok=True)
    imp_s, imp_c, imp_code, _ = timed_cli(*common, "import", "--target", TARGET, "--out", str(out))
    assert imp_code == 0, "import refused"
    plan_s, plan_c, plan_code, text = timed_cli(*common, "plan", "--target", TARGET, "--json")
    last = json.loads(text.strip().splitlines()[-1])
    changes = sum(len(w["actions"]) for w in (last.get("plan") or {}).get("waves", ()))
    assert plan_code == 0 and changes == 0, f"the round trip changed something: {last}"
    return {
        "import": (imp_s, imp_c),
        "plan": (plan_s, plan_c),
        "changes": changes,
        "written": out.read_text().count("\n  - kind: "),
        "result": last.get("result"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=600)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    desired = fleet(args)
    with MotoProcess() as moto, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        built = build(moto.url, desired)
        print(
            f"moto_server at {moto.url}; {len(desired):,} resources ({args.instances} "
            f"instances, {args.groups} groups, {args.clusters} clusters, {args.services} "
            f"services) built by Reconciler in {built:.1f}s",
            flush=True,
        )
        common = ["--config", str(config(tmp, moto.url)), "--store", f"sqlite:///{tmp}/state.db"]
        senses, trips = [], []
        for i in range(args.rounds):
            senses.append(plain_sense(moto.url))
            trips.append(round_trip(common, tmp / "desired" / "fleet.yaml"))
            t = trips[-1]
            print(
                f"  round {i + 1}: sense {senses[-1][0]:.2f}s, import {t['import'][0]:.2f}s "
                f"({t['written']:,} written), plan {t['plan'][0]:.2f}s ({t['result']}, "
                f"{t['changes']} changes)",
                flush=True,
            )

        def med(values: list[tuple[float, float]]) -> tuple[float, float]:
            return statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)

        sense_w, sense_c = med(senses)
        imp_w, imp_c = med([t["import"] for t in trips])
        plan_w, plan_c = med([t["plan"] for t in trips])
        print(f"median of {args.rounds}, wall (this process's CPU):")
        print(f"  plain sense of the fleet (baseline): {sense_w:.2f}s ({sense_c:.2f}s)")
        print(
            f"  import: {imp_w:.2f}s ({imp_c:.2f}s) = {imp_w / sense_w:.2f}x the plain sense "
            f"({imp_c / sense_c:.2f}x CPU)"
        )
        print(
            f"  plan of the imported file: {plan_w:.2f}s ({plan_c:.2f}s) = "
            f"{plan_w / sense_w:.2f}x the plain sense ({plan_c / sense_c:.2f}x CPU); "
            f"changes {max(t['changes'] for t in trips)} in every round"
        )
        print(f"  round trip (import + plan): {imp_w + plan_w:.2f}s")


if __name__ == "__main__":
    main()
