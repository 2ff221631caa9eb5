"""Core scale benchmark: seconds per stage and peak RSS at 1k / 10k / 100k resources, 10% drift.

Also, at 10k, our compare against ``deepdiff.DeepDiff`` on the same data in the same run.
Each size runs in a fresh process so its peak RSS is its own. Prints figures; asserts nothing.

    .venv/bin/python bench/core_scale.py [--sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import resource
import time
from typing import Any

SIZES = (1_000, 10_000, 100_000)


Rows = list[tuple[str, str, dict[str, Any]]]


def drifted(fleet: Rows, rng: random.Random) -> tuple[Rows, Rows]:
    """Desired = the fleet; observed = the fleet with 10% drift (5% changed, 3% gone, 2% extra)."""
    observed = []
    for kind, name, spec in fleet:
        roll = rng.random()
        if roll < 0.03:
            continue  # missing: an addition
        if roll < 0.08:
            spec = dict(spec, labels={"drift": "yes"}) if kind == "sim.Node" else \
                dict(spec, replicas=max(0, spec["replicas"] - 1))
        observed.append((kind, name, spec))
    extra = int(len(fleet) * 0.02)
    observed += [("sim.Node", f"extra-{i}", fleet[0][2]) for i in range(extra)]
    return fleet, observed


def run_size(n: int, with_deepdiff: bool) -> dict[str, float]:
    from reconciler.catalogue import rules_for
    from reconciler.core.compare import compare
    from reconciler.core.model import DesiredResource, DesiredState, ResourceKey
    from reconciler.core.plan import PlanContext, make_plan
    from reconciler.core.policy import Policy
    from reconciler.core.sense import SenseOptions, sense
    from reconciler.orchestration.runtime import SystemClock
    from reconciler.providers.simulated import SimulatedProvider, generate_fleet

    rng = random.Random(n)
    desired_rows, observed_rows = drifted(generate_fleet(n, rng), rng)
    provider = SimulatedProvider(":memory:", page_size=1000)
    provider.put_many(observed_rows)
    desired = DesiredState(
        resources=tuple(DesiredResource(key=ResourceKey(kind=k, name=nm), spec=s)
                        for k, nm, s in desired_rows),
        version="bench", source_uri="bench", loaded_at=SystemClock().now())
    policy, rules, clock = Policy(max_delete_fraction=1.0), rules_for(), SystemClock()
    figures: dict[str, float] = {}

    t0 = time.perf_counter()
    snap = sense(provider, ["sim.Node", "sim.Workload"], target="bench", correlation_id="b",
                 clock=clock, options=SenseOptions(deadline_s=600))
    t1 = time.perf_counter()
    diff, drift = compare(desired.resources, snap, rules=rules, policy=policy)
    t2 = time.perf_counter()
    ctx = PlanContext(target="bench", correlation_id="b", desired_version="bench", policy=policy,
                      rules=rules, now=clock.now())
    plan = make_plan(diff, snap, ctx)
    t3 = time.perf_counter()
    figures.update(sense_s=t1 - t0, compare_s=t2 - t1, plan_s=t3 - t2, cycle_s=t3 - t0,
                   actions=len(plan.actions), drifted=drift.drifted)
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if with_deepdiff:
        figures.update(_versus_deepdiff(desired, snap))
    return figures


def _versus_deepdiff(desired: Any, snap: Any) -> dict[str, float]:
    from deepdiff import DeepDiff

    from reconciler.catalogue import rules_for
    from reconciler.core.compare import compare
    from reconciler.core.policy import Policy

    want = {str(r.key): r.spec for r in desired.resources}
    have = {str(r.key): r.spec for r in snap.resources}
    t0 = time.perf_counter()
    compare(desired.resources, snap, rules=rules_for(), policy=Policy())
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    DeepDiff(have, want, ignore_order=False)
    theirs = time.perf_counter() - t0
    return {"ours_compare_s": ours, "deepdiff_s": theirs, "speedup_vs_deepdiff": theirs / ours}


def _child(n: int, with_deepdiff: bool, queue: Any) -> None:
    queue.put(run_size(n, with_deepdiff))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    print(f"{'resources':>10} {'actions':>8} {'sense s':>8} {'compare s':>9} {'plan s':>7} "
          f"{'cycle s':>8} {'peak RSS MiB':>12}")
    comparison = None
    for n in args.sizes:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(n, n == 10_000, queue))
        proc.start()
        f = queue.get()
        proc.join()
        print(f"{n:>10} {int(f['actions']):>8} {f['sense_s']:>8.3f} {f['compare_s']:>9.3f} "
              f"{f['plan_s']:>7.3f} {f['cycle_s']:>8.3f} {f['peak_rss_mib']:>12.0f}")
        if "speedup_vs_deepdiff" in f:
            comparison = f
    if comparison:
        print(f"\ncompare at 10k: ours {comparison['ours_compare_s']:.3f}s, deepdiff.DeepDiff "
              f"{comparison['deepdiff_s']:.3f}s -> {comparison['speedup_vs_deepdiff']:.1f}x faster")
    print("targets: 100k cycle (sense+compare+plan) < 2 s and < 1024 MiB; compare >= 20x deepdiff")


if __name__ == "__main__":
    main()
