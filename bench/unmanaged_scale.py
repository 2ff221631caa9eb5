"""Unmanaged discovery at scale: a sense that reports what no target owns, against a plain sense.

One moto server holds ``--instances`` EC2 instances (default 5,000): ``--owned`` of them
(default 80%) owned by the bench target, a tenth of the rest owned by another target, the
others made by hand (a ``Name`` tag, no owner; a few match ``policy.unmanaged_ignore``).
Timed, alternately, ``--rounds`` times each (median):

- **plain sense**: the same listing, keeping the target's own instances only (unowned ones
  are dropped as they are listed, as a sense that did not look for unmanaged resources would);
- **sense with unmanaged discovery**: the provider's real sense (owned and unowned instances
  observed), then the *Unmanaged* report a ``plan`` prints: compare's unmanaged keys and
  coverage, and the ``?`` lines.

Prints both, the ratio, and the report's coverage figure. Asserts nothing.

    .venv/bin/python bench/unmanaged_scale.py [--instances 5000] [--owned 0.8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]

from reconciler.catalogue import rules_for  # noqa: E402
from reconciler.core.compare import compare  # noqa: E402
from reconciler.core.model import DesiredResource, DesiredState, ResourceKey  # noqa: E402
from reconciler.core.policy import Policy  # noqa: E402
from reconciler.core.sense import SenseOptions, sense  # noqa: E402
from reconciler.embedded import MotoProcess  # noqa: E402
from reconciler.orchestration.runtime import SystemClock  # noqa: E402
from reconciler.output.render import render_diff  # noqa: E402
from reconciler.providers.aws import AwsProvider  # noqa: E402
from reconciler.providers.aws.ec2 import Ec2Instances  # noqa: E402

AMI, TYPE, TARGET, KIND = "ami-0c02fb55956c7d316", "t3.micro", "bench", "ec2.Instance"
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)
POLICY = Policy(unmanaged_ignore={"tags": {"owner": "ci"}, "names": ["scratch-*"]})


def build(ec2: Any, n: int, owned: float) -> dict[str, int]:
    """The fleet: one reservation per owned instance (as Reconciler creates them); hand-made
    ones in batches of 50 (as a person or another tool launches them), named one by one."""
    mine = int(n * owned)
    others = (n - mine) // 10
    hand = n - mine - others
    for i in range(mine):
        _run(ec2, 1, {"reconciler:target": TARGET, "reconciler:name": f"node-{i:05d}"})
    for i in range(others):
        _run(ec2, 1, {"reconciler:target": "other", "reconciler:name": f"o-{i:05d}"})
    made = 0
    while made < hand:
        ids = _run(ec2, min(50, hand - made), {"team": "legacy"})
        for j, iid in enumerate(ids):
            k = made + j
            name = f"scratch-{k:05d}" if k % 20 == 0 else f"legacy-{k:05d}"
            tags = [{"Key": "Name", "Value": name}]
            if k % 20 == 1:
                tags.append({"Key": "owner", "Value": "ci"})
            ec2.create_tags(Resources=[iid], Tags=tags)
        made += len(ids)
    return {"owned": mine, "other target": others, "hand-made": hand}


def _run(ec2: Any, count: int, tags: dict[str, str]) -> list[str]:
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    out = ec2.run_instances(
        ImageId=AMI, InstanceType=TYPE, MinCount=count, MaxCount=count, TagSpecifications=spec
    )
    return [i["InstanceId"] for i in out["Instances"]]


@contextmanager
def owned_only() -> Iterator[None]:
    """The listing as a sense without unmanaged discovery would keep it: own instances only."""
    original: Callable[..., None] = Ec2Instances._add

    def add(self: Ec2Instances, listing: Any, instance: dict[str, Any]) -> None:
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", ())}
        if tags.get("reconciler:target") == self.ctx.target:
            original(self, listing, instance)

    Ec2Instances._add = add  # type: ignore[method-assign]
    try:
        yield
    finally:
        Ec2Instances._add = original  # type: ignore[method-assign]


def desired(n: int) -> DesiredState:
    spec = {"image_id": AMI, "instance_type": TYPE, "state": "running", "tags": {}}
    res = tuple(
        DesiredResource(key=ResourceKey(kind=KIND, name=f"node-{i:05d}"), spec=spec)
        for i in range(n)
    )
    return DesiredState(
        resources=res,
        version="bench",
        source_uri="bench",
        loaded_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def plain(provider: AwsProvider, state: DesiredState) -> tuple[float, float, int, list[str]]:
    with owned_only():
        t0, c0 = time.perf_counter(), time.process_time()
        snap = _sense(provider)
        return time.perf_counter() - t0, time.process_time() - c0, len(snap.resources), []


def discovering(provider: AwsProvider, state: DesiredState) -> tuple[float, float, int, list[str]]:
    t0, c0 = time.perf_counter(), time.process_time()
    snap = _sense(provider)
    diff, _ = compare(state.resources, snap, rules=rules_for([KIND]), policy=POLICY, kinds=[KIND])
    lines = render_diff(diff)
    return time.perf_counter() - t0, time.process_time() - c0, len(snap.resources), lines


def _sense(provider: AwsProvider) -> Any:
    snap = sense(
        provider,
        [KIND],
        target=TARGET,
        correlation_id=f"b-{time.monotonic_ns()}",
        clock=SystemClock(),
        options=SenseOptions(deadline_s=600),
    )
    assert snap.kinds[KIND].completeness == 1.0, snap.kinds[KIND].errors
    return snap


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=5000)
    parser.add_argument("--owned", type=float, default=0.8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with MotoProcess() as moto:
        provider = AwsProvider(
            TARGET, {"endpoint_url": moto.url, "emulator": True, "read_timeout_s": 300}
        )
        t0 = time.perf_counter()
        made = build(provider.client("ec2"), args.instances, args.owned)
        print(
            f"moto_server at {moto.url}; {args.instances:,} instances "
            f"({', '.join(f'{v:,} {k}' for k, v in made.items())}) made in "
            f"{time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        state = desired(made["owned"])
        discovering(provider, state)  # warm up: clients, moto's first-page caches
        runs: dict[str, list[tuple[float, float, int, list[str]]]] = {"plain": [], "disc": []}
        for i in range(args.rounds):  # alternate which goes first: moto warms up as it serves
            order = ("plain", "disc") if i % 2 == 0 else ("disc", "plain")
            for name in order:
                runs[name].append((plain if name == "plain" else discovering)(provider, state))
            (p_s, p_c, p_n, _), (d_s, d_c, d_n, _) = runs["plain"][-1], runs["disc"][-1]
            print(
                f"  round {i + 1}: plain sense {p_s:.2f}s (our CPU {p_c:.2f}s, {p_n:,} "
                f"resources); with discovery {d_s:.2f}s (our CPU {d_c:.2f}s, {d_n:,} "
                "resources)",
                flush=True,
            )
        wall = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
        cpu = {k: statistics.median(r[1] for r in v) for k, v in runs.items()}
        print("report:", *(f"  {line}" for line in runs["disc"][-1][3][-3:]), sep="\n")
        print(
            f"{args.instances:,} instances, median of {args.rounds}: plain sense "
            f"{wall['plain']:.2f}s, sense with unmanaged discovery {wall['disc']:.2f}s: ratio "
            f"{wall['disc'] / wall['plain']:.2f}x; this process's CPU {cpu['plain']:.2f}s vs "
            f"{cpu['disc']:.2f}s: ratio {cpu['disc'] / cpu['plain']:.2f}x"
        )


if __name__ == "__main__":
    main()
