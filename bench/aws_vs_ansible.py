"""Reconciler vs Ansible's ``amazon.aws.ec2_instance`` on the same moto server, plus sense latency.

Converge 200 drifted EC2 instances, then run a no-change check, once with Reconciler's aws
provider and once with Ansible (one ``ec2_instance`` task per instance, ``exact_count: 1``,
looped over the fleet: how teams keep named instances with it). Prints both wall times and the
ratios, then the sense latency of 2,000 instances against the ideal (pages x the median
single-page latency, measured in the same run). Asserts nothing.

Both tools talk to moto through the test proxy that keeps AWS's client-token rule
(tests/support/aws_rules.py), so the terminated quarter must be re-created under new tokens as
on AWS; ``--direct`` talks to moto without it. The sense latency is measured on moto directly.

    .venv/bin/python bench/aws_vs_ansible.py [--instances 200] [--sense 2000] [--skip-ansible]
                                             [--direct]

Ansible is installed into .venv-bench/ on first use (bench/requirements-ansible.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]

from reconciler.catalogue import rules_for  # noqa: E402
from reconciler.core.gate import BasicGate  # noqa: E402
from reconciler.core.loop import CycleDeps, CycleRequest, run_cycle  # noqa: E402
from reconciler.core.model import DesiredResource, DesiredState, ResourceKey  # noqa: E402
from reconciler.core.policy import Policy  # noqa: E402
from reconciler.embedded import MotoProcess, reset  # noqa: E402
from reconciler.orchestration.runtime import SystemClock  # noqa: E402
from reconciler.providers.aws import AwsProvider  # noqa: E402
from reconciler.testing import MemoryStore, RecordingSink  # noqa: E402

AMI, TYPE = "ami-0c02fb55956c7d316", "t3.micro"
BENCH_VENV = ROOT / ".venv-bench"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
         "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
os.environ.update(CREDS)

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: exactly one instance per name
      amazon.aws.ec2_instance:
        name: "{{ item }}"
        image_id: %(ami)s
        instance_type: %(type)s
        exact_count: 1
        state: running
        wait: false
        region: us-east-1
        endpoint_url: %(url)s
        tags: {team: bench}
      loop: "{{ names }}"
"""


def names(n: int) -> list[str]:
    return [f"node-{i:04d}" for i in range(n)]


def desired(n: int) -> DesiredState:
    spec = {"image_id": AMI, "instance_type": TYPE, "state": "running", "tags": {"team": "bench"}}
    res = tuple(DesiredResource(key=ResourceKey(kind="ec2.Instance", name=name), spec=spec)
                for name in names(n))
    return DesiredState(resources=res, version="bench", source_uri="bench",
                        loaded_at=SystemClock().now())


def cycle(provider: AwsProvider, state: DesiredState) -> tuple[float, Any]:
    req = CycleRequest(target="bench", desired=state, kinds=("ec2.Instance",), manual=True,
                       policy=Policy(max_parallel=16, max_delete_fraction=1.0),
                       correlation_id=f"bench-{time.monotonic_ns()}")
    deps = CycleDeps(provider=provider, store=MemoryStore(), events=RecordingSink(),
                     clock=SystemClock(), gate=BasicGate(), rules=rules_for(),
                     rng=random.Random(0))
    t0 = time.perf_counter()
    report = run_cycle(req, deps)
    return time.perf_counter() - t0, report


def drift(ec2: Any, by_name: dict[str, str]) -> str:
    """Half the fleet drifts: a quarter terminated (to re-create), a quarter stopped (to start)."""
    ordered = sorted(by_name)
    quarter = len(ordered) // 4
    gone = [by_name[n] for n in ordered[:quarter]]
    stopped = [by_name[n] for n in ordered[quarter:2 * quarter]]
    for chunk in range(0, len(gone), 100):
        ec2.terminate_instances(InstanceIds=gone[chunk:chunk + 100])
    for chunk in range(0, len(stopped), 100):
        ec2.stop_instances(InstanceIds=stopped[chunk:chunk + 100])
    return f"{len(gone)} terminated, {len(stopped)} stopped of {len(ordered)}"


def live_by_name(ec2: Any, tag: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    states = ["pending", "running", "stopping", "stopped"]
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": states}])
    for page in pages:
        for r in page["Reservations"]:
            for i in r["Instances"]:
                tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                if tag in tags and i["State"]["Name"] in ("pending", "running"):
                    out.setdefault(tags[tag], []).append(i["InstanceId"])
    return out


def run_reconciler(url: str, n: int, moto_url: str) -> dict[str, float]:
    reset(moto_url)
    provider = AwsProvider("bench", {"endpoint_url": url, "emulator": True})
    state = desired(n)
    cycle(provider, state)  # build the fleet (not timed)
    ec2 = provider.client("ec2")
    by_name = {k: v[0] for k, v in live_by_name(ec2, "reconciler:name").items()}
    print(f"  reconciler: drift {drift(ec2, by_name)}")
    converge_s, report = cycle(provider, state)
    provider.stats.reset()
    check_s, check = cycle(provider, state)
    final = live_by_name(ec2, "reconciler:name")
    assert report.outcome.converged, report.outcome.error
    print(f"  reconciler: converge {report.outcome.status} in {converge_s:.2f}s "
          f"({report.outcome.actions_succeeded} actions); no-change {check.outcome.status} in "
          f"{check_s:.2f}s ({provider.stats.total_calls} calls, "
          f"{provider.stats.mutating_calls} mutating); {len(final)} named, "
          f"{sum(len(v) for v in final.values())} running")
    return {"converge": converge_s, "check": check_s}


def ensure_ansible() -> Path:
    playbook = BENCH_VENV / "bin" / "ansible-playbook"
    if not playbook.exists():
        print("  installing ansible into .venv-bench/ (first use) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "-q", "-r",
                        str(ROOT / "bench" / "requirements-ansible.txt")], check=True)
    return playbook


def ansible(playbook: Path, url: str, n: int, workdir: Path) -> float:
    book = workdir / "fleet.yml"
    book.write_text(PLAYBOOK % {"ami": AMI, "type": TYPE, "url": url})
    extra = workdir / "vars.json"
    extra.write_text(json.dumps({"names": names(n)}))
    env = {**os.environ, **CREDS, "ANSIBLE_STDOUT_CALLBACK": "null",
           "ANSIBLE_LOCALHOST_WARNING": "False", "ANSIBLE_PYTHON_INTERPRETER":
           str(BENCH_VENV / "bin" / "python"), "ANSIBLE_HOME": str(workdir / "home")}
    t0 = time.perf_counter()
    done = subprocess.run([str(playbook), "-i", "localhost,", "-c", "local", str(book),
                           "-e", f"@{extra}"], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:])
        raise SystemExit("ansible-playbook failed")
    return elapsed


def run_ansible(url: str, n: int, moto_url: str) -> dict[str, float]:
    playbook = ensure_ansible()
    reset(moto_url)
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=url)
    with tempfile.TemporaryDirectory() as tmp:
        ansible(playbook, url, n, Path(tmp))  # build the fleet (not timed)
        by_name = {k: v[0] for k, v in live_by_name(ec2, "Name").items()}
        print(f"  ansible: drift {drift(ec2, by_name)}", flush=True)
        converge_s = ansible(playbook, url, n, Path(tmp))
        check_s = ansible(playbook, url, n, Path(tmp))
    final = live_by_name(ec2, "Name")
    print(f"  ansible: converge {converge_s:.2f}s; no-change {check_s:.2f}s; "
          f"{len(final)} named, {sum(len(v) for v in final.values())} running")
    return {"converge": converge_s, "check": check_s}


def sense_latency(url: str, n: int, repeats: int = 5) -> None:
    reset(url)
    provider = AwsProvider("bench", {"endpoint_url": url, "emulator": True})
    ec2 = provider.client("ec2")
    for i in range(n):  # one reservation per instance, as Reconciler creates them
        tags = [{"Key": "reconciler:target", "Value": "bench"},
                {"Key": "reconciler:name", "Value": f"s-{i:05d}"}]
        ec2.run_instances(ImageId=AMI, InstanceType=TYPE, MinCount=1, MaxCount=1,
                          TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
    size = provider.options.page_size
    states = ["pending", "running", "stopping", "stopped"]
    singles, observes, pages = [], [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        ec2.describe_instances(MaxResults=size,
                               Filters=[{"Name": "instance-state-name", "Values": states}])
        singles.append(time.perf_counter() - t0)
        provider.stats.reset()
        t0 = time.perf_counter()
        seen = provider.observe("ec2.Instance", 300)
        observes.append(time.perf_counter() - t0)
        pages = provider.stats.calls["ec2.describe_instances"]
        assert len(seen.resources) == n and seen.completeness == 1.0
    ideal = pages * statistics.median(singles)
    actual = statistics.median(observes)
    print(f"sense {n} instances: {actual:.2f}s median of {repeats}; ideal {ideal:.2f}s "
          f"({pages} pages x {statistics.median(singles):.2f}s median single page); "
          f"ratio {actual / ideal:.2f}x (target <= 1.2x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--sense", type=int, default=2000)
    parser.add_argument("--skip-ansible", action="store_true")
    parser.add_argument("--direct", action="store_true", help="no AWS-rules proxy in between")
    args = parser.parse_args()
    from tests.support.fault_proxy import FaultProxy

    with MotoProcess() as moto:
        proxy = FaultProxy(moto.url)
        url = moto.url if args.direct else proxy.start()
        print(f"moto_server at {moto.url}" + ("" if args.direct else
              f", through the AWS-rules proxy at {url}")
              + f"; {args.instances} instances, half of them drifted")
        ours = run_reconciler(url, args.instances, moto.url)
        if not args.skip_ansible:
            theirs = run_ansible(url, args.instances, moto.url)
            print(f"converge:  reconciler {ours['converge']:.2f}s  ansible "
                  f"{theirs['converge']:.2f}s  ratio {theirs['converge'] / ours['converge']:.1f}x "
                  "(target >= 50x)")
            print(f"no-change: reconciler {ours['check']:.2f}s  ansible {theirs['check']:.2f}s  "
                  f"ratio {theirs['check'] / ours['check']:.1f}x (target >= 50x)")
        if args.sense:
            sense_latency(moto.url, args.sense)
        proxy.stop()


if __name__ == "__main__":
    main()
