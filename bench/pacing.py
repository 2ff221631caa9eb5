"""Client-side pacing against a rate-limited RunInstances: 1,000 creates, limiter off vs on.

moto's server sits behind the test fault proxy, which refuses RunInstances beyond a token
bucket (``RequestLimitExceeded``, as EC2 does). Reconciler converges 1,000 new ``ec2.Instance``
resources through the aws provider and the engine's Actuator (retries with backoff), cycle after
cycle until converged, twice in one run: with no client-side limit (every thread fires at
once; throttled calls back off and retry) and with ``rate_limits`` set to the proxy's bucket.
Prints wall time, throttles the caller saw, the proxy's refusals, retries and the ideal
(creates / allowed rate), and the ratio off/on. Asserts nothing.

    .venv/bin/python bench/pacing.py [--creates 1000] [--rate 20] [--bucket 20]

The default rate is 20/s so both runs fit in about 3 minutes (ideal 50 s each); AWS's own
RunInstances bucket is 5, refilled at 2/s (the provider's default against AWS).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]

from tests.support.fault_proxy import AwsRules, FaultProxy  # noqa: E402

from reconciler.catalogue import rules_for  # noqa: E402
from reconciler.core.gate import BasicGate  # noqa: E402
from reconciler.core.loop import CycleDeps, CycleReport, CycleRequest, run_cycle  # noqa: E402
from reconciler.core.model import DesiredResource, DesiredState, ResourceKey  # noqa: E402
from reconciler.core.policy import Policy  # noqa: E402
from reconciler.embedded import MotoProcess, reset  # noqa: E402
from reconciler.orchestration.runtime import SystemClock  # noqa: E402
from reconciler.providers.aws import AwsProvider  # noqa: E402
from reconciler.testing import MemoryStore, RecordingSink  # noqa: E402

AMI, TYPE = "ami-0c02fb55956c7d316", "t3.micro"
MAX_CYCLES = 5
os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
# Enough attempts and passes that the unpaced run converges too: the point is its cost.
POLICY = Policy(max_parallel=16, max_attempts=10, backoff_base_s=1.0, backoff_cap_s=30.0,
                jitter=0.5, on_failure="continue", max_iterations=5, max_delete_fraction=1.0,
                cycle_deadline_seconds=3600, sense_deadline_seconds=300)


@dataclass
class Run:
    label: str
    wall_s: float
    cycles: int
    converged: bool
    created: int
    failed: int
    retries: int
    throttles: int
    refusals: int
    run_calls: int
    paced_wait_s: float


def desired(n: int) -> DesiredState:
    spec = {"image_id": AMI, "instance_type": TYPE, "state": "running", "tags": {"team": "bench"}}
    res = tuple(DesiredResource(key=ResourceKey(kind="ec2.Instance", name=f"node-{i:04d}"),
                                spec=spec) for i in range(n))
    return DesiredState(resources=res, version="bench", source_uri="bench",
                        loaded_at=SystemClock().now())


def cycle(provider: AwsProvider, state: DesiredState, n: int) -> CycleReport:
    req = CycleRequest(target="bench", desired=state, kinds=("ec2.Instance",), manual=True,
                       policy=POLICY, correlation_id=f"pacing-{n}-{time.monotonic_ns()}")
    deps = CycleDeps(provider=provider, store=MemoryStore(), events=RecordingSink(),
                     clock=SystemClock(), gate=BasicGate(), rules=rules_for(),
                     rng=random.Random(n))
    return run_cycle(req, deps)


def converge(label: str, moto_url: str, proxy: FaultProxy, args: argparse.Namespace,
             limits: dict[str, Any]) -> Run:
    reset(moto_url)
    proxy.reset(rules=AwsRules(rate_limits={"RunInstances": (args.rate, args.bucket)}))
    provider = AwsProvider("bench", {"endpoint_url": proxy.url, "emulator": True,
                                     "rate_limits": limits})
    state, reports = desired(args.creates), []
    t0 = time.perf_counter()
    for n in range(1, MAX_CYCLES + 1):
        reports.append(cycle(provider, state, n))
        print(f"  {label}: cycle {n} {reports[-1].outcome.status} after "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
        if reports[-1].outcome.converged:
            break
    wall = time.perf_counter() - t0
    results = [r for report in reports for a in report.actuations for r in a.results]
    stats = provider.stats
    return Run(label, wall, len(reports), reports[-1].outcome.converged,
               created=sum(1 for r in results if r.state == "succeeded"),
               failed=sum(1 for r in results if r.state == "failed"),
               retries=sum(max(0, r.attempts - 1) for r in results),
               throttles=stats.throttles["ec2.run_instances"],
               refusals=proxy.injected["limit:RunInstances"],
               run_calls=stats.calls["ec2.run_instances"], paced_wait_s=stats.paced_wait_s)


def table(runs: list[Run], ideal: float) -> None:
    print(f"\n{'client limiter':<15}{'wall s':>8}{'x ideal':>9}{'cycles':>8}{'created':>9}"
          f"{'failed':>8}{'retries':>9}{'throttles':>11}{'proxy refused':>15}"
          f"{'RunInstances':>14}{'paced s':>9}")
    for r in runs:
        print(f"{r.label:<15}{r.wall_s:>8.1f}{r.wall_s / ideal:>9.2f}"
              f"{str(r.cycles) + ('' if r.converged else '!'):>8}{r.created:>9}{r.failed:>8}"
              f"{r.retries:>9}{r.throttles:>11}{r.refusals:>15}{r.run_calls:>14}"
              f"{r.paced_wait_s:>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="RunInstances refill per s")
    parser.add_argument("--bucket", type=int, default=20, help="RunInstances bucket size")
    args = parser.parse_args()
    ideal = args.creates / args.rate
    limits = {"ec2.RunInstances": {"rate": args.rate, "burst": args.bucket}}
    with MotoProcess() as moto:
        proxy = FaultProxy(moto.url, rules=AwsRules(
            rate_limits={"RunInstances": (args.rate, args.bucket)}))
        proxy.start()
        try:
            print(f"{args.creates} creates; proxy RunInstances bucket {args.bucket}, refill "
                  f"{args.rate:g}/s; ideal {ideal:.1f}s; max_parallel {POLICY.max_parallel}")
            runs = [converge("off", moto.url, proxy, args, {}),
                    converge("on", moto.url, proxy, args, limits)]
        finally:
            proxy.stop()
    table(runs, ideal)
    off, on = runs
    print(f"\nwall off/on: {off.wall_s / on.wall_s:.2f}x; throttles off/on: "
          f"{off.throttles}/{on.throttles}; retries off/on: {off.retries}/{on.retries}")


if __name__ == "__main__":
    main()
