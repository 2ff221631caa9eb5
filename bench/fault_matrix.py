"""The fault matrix: one row per fault, on the simulated provider and on moto's server through
the fault-injecting proxy. For each: cycles to converge, actions applied, duplicates, deletions
of unobserved resources, retries, wall time. The duplicates and unobserved-deletion cells must
be 0. Prints a Markdown table; asserts nothing.

    .venv/bin/python bench/fault_matrix.py [--skip-aws | --only TEXT]

The proxy keeps AWS's client-token rule in every aws row (``AwsRules()``); the last two rows
add what moto lacks: a token remembered from the day's first create, and a 15 s listing lag.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "include")]

MAX_CYCLES = 6


@dataclass
class Row:
    provider: str
    fault: str
    cycles: str
    actions: int
    duplicates: int
    unobserved_deletes: int
    retries: int
    wall_s: float
    guard: str


def _tally(reports: list[Any]) -> tuple[int, int, int]:
    """(actions applied, retries, deletions of kinds the cycle had not observed whole)."""
    applied = retries = unobserved = 0
    for report in reports:
        snap = report.snapshot
        for result in (r for a in report.actuations for r in a.results):
            retries += max(0, result.attempts - 1)
            if result.state != "succeeded":
                continue
            applied += 1
            if result.type == "delete" and snap is not None and not snap.is_complete(
                    result.key.kind):
                unobserved += 1
    return applied, retries, unobserved


def _until_converged(cycle: Callable[[], Any]) -> tuple[str, list[Any]]:
    reports = []
    for n in range(1, MAX_CYCLES + 1):
        reports.append(cycle())
        if reports[-1].outcome.converged:
            return str(n), reports
    return f"not in {MAX_CYCLES} ({reports[-1].outcome.status})", reports


# -- simulated provider -----------------------------------------------------------------------

def sim_rows() -> list[Row]:
    from tests.builders import node, want, workload
    from tests.loop_support import Rig

    from reconciler.core.policy import Policy
    from reconciler.providers.simulated import Faults

    fleet = [want(f"sim.Node/n{i}", node()) for i in range(20)] + \
        [want(f"sim.Workload/w{i}", workload(replicas=2), sla="critical") for i in range(40)]
    policy = Policy(max_attempts=8, backoff_base_s=0.05, backoff_cap_s=1, jitter=0.2,
                    max_delete_fraction=1.0, auto_apply=("low", "high", "critical"))

    def world(faults: Faults, *, drift: bool = True) -> Rig:
        rig = Rig.make(Faults(), seed=11)
        for r in fleet:
            rig.provider.put(r.key.kind, r.key.name, r.spec)
        if drift:
            for i in range(0, 20, 4):
                rig.provider.delete("sim.Node", f"n{i}")
            for i in range(0, 40, 5):
                rig.provider.put("sim.Workload", f"w{i}", workload(replicas=1))
            rig.provider.put("sim.Node", "orphan-a", node())  # ours, not desired: delete
        rig.provider.put("sim.Node", "theirs", node(), managed=False)
        rig.provider.faults = faults
        return rig

    def row(name: str, faults: Faults, guard: str, pol: Policy = policy,
            after_a_good_cycle: bool = False) -> Row:
        rig = world(faults)
        if after_a_good_cycle:  # the store remembers what a healthy listing returned
            rig.provider.faults = Faults()
            rig.cycle(fleet, pol, approve=True)
            rig.provider.faults = faults
        t0 = time.perf_counter()
        cycles, reports = _until_converged(lambda: rig.cycle(fleet, pol, approve=True))
        wall = time.perf_counter() - t0
        applied, retries, unobserved = _tally(reports)
        extra = sum(1 for k in rig.fleet() if k not in {str(r.key) for r in fleet})
        dup = max(0, extra - (1 if "orphan" in guard else 0)) if cycles.isdigit() else 0
        return Row("simulated", name, cycles, applied, dup, unobserved, retries, wall, guard)

    rows = [
        row("throttling storm (50% of calls)", Faults(throttle_rate=0.5), "bounded retries"),
        row("5xx on 30% of applies", Faults(failure_rate=0.3), "bounded retries"),
        row("lost response after a create applied (30%)", Faults(lose_response_rate=0.3),
            "no duplicate"),
        row("every sim.Node listing fails", Faults(fail_kinds=frozenset({"sim.Node"})),
            "no delete of unobserved (orphan kept)"),
        row("empty 200 OK listing of sim.Workload", Faults(empty_kinds=frozenset({"sim.Workload"})),
            "creates are idempotent: no duplicate"),
        row("the same, after a good cycle listed 40",
            Faults(empty_kinds=frozenset({"sim.Workload"})),
            "doubted for a cycle (nothing sent), then idempotent creates", after_a_good_cycle=True),
        row("latency spike past the sense deadline", Faults(latency_s=5.0),
            "incomplete: no deletes", policy.model_copy(update={"sense_deadline_seconds": 1})),
    ]
    rows.append(_breaker_row(world, fleet, policy))
    return rows


def _breaker_row(world: Callable[..., Any], fleet: list[Any], policy: Any) -> Row:
    from reconciler.providers.simulated import Faults

    rig = world(Faults(fail_actions=frozenset({"sim.Node/n0"})))
    pol = policy.model_copy(update={"breaker_failures": 3})
    t0 = time.perf_counter()
    statuses = [rig.cycle(fleet, pol, approve=True).outcome.status for _ in range(5)]
    calls = rig.provider.stats.apply_calls
    statuses.append(rig.cycle(fleet, pol, approve=True).outcome.status)
    held = rig.provider.stats.apply_calls == calls and rig.store.load_breaker("t").state == "open"
    rig.provider.faults = Faults()
    reset = rig.cycle(fleet, pol, approve=True, reset_breaker=True).outcome.status
    guard = (f"breaker open after {statuses.index('breaker_open')} failed cycles, "
             f"{'held' if held else 'NOT held'} until reset; then {reset}")
    return Row("simulated", "an action fails permanently", "-", 0, 0, 0, 0,
               time.perf_counter() - t0, guard)


# -- moto's server through the fault proxy ------------------------------------------------------

def aws_rows(only: str | None = None) -> list[Row]:
    from tests.integration.aws.support import node
    from tests.support.fault_proxy import AwsRules, FaultProxy, Faults

    from reconciler.core.policy import Policy
    from reconciler.embedded import MotoProcess

    fleet = [node(f"web-{i}") for i in range(12)]
    policy = Policy(max_attempts=8, backoff_base_s=0.05, backoff_cap_s=1, jitter=0.2,
                    max_delete_fraction=1.0, auto_apply=("low", "high", "critical"))
    cases: list[tuple[str, Any, str, dict[str, Any]]] = [
        ("20% throttling + 5% 5xx on every call",
         Faults(throttle_rate=0.2, error_rate=0.05), "bounded retries", {}),
        ("10% connection resets", Faults(reset_rate=0.1), "bounded retries", {}),
        ("RunInstances applied, response lost", Faults(drop_first=frozenset(
            {"RunInstances"})), "no duplicate instance", {}),
        ("every DescribeInstances fails", Faults(fail_ops=frozenset(
            {"DescribeInstances"})), "no delete of unobserved", {}),
        ("latency spike past the sense deadline", Faults(latency_s=1.5),
         "incomplete: no deletes", {}),
        # AWS keeps a RunInstances ClientToken >= 24 h after its instance is terminated
        ("instance terminated by hand, re-created the same day", Faults(),
         "a new instance, no duplicate", {"same_day": True}),
        # real clock: the proxy hides each new instance and its tags for 15 s
        ("listing lags 15 s after launch", Faults(), "no second instance",
         {"rules": AwsRules(listing_lag_s=15, tag_lag_s=15)}),
    ]
    rows = []
    with MotoProcess() as moto:
        proxy = FaultProxy(moto.url)
        proxy.start()
        try:
            for name, faults, guard, extra in cases:
                if only is None or only.lower() in name.lower():
                    rows.append(_aws_row(moto.url, proxy, fleet, policy, name, faults, guard,
                                         **extra))
        finally:
            proxy.stop()
    return rows


def _aws_row(url: str, proxy: Any, fleet: list[Any], policy: Any, name: str, faults: Any,
             guard: str, rules: Any = None, same_day: bool = False) -> Row:
    """A converged fleet of 12, web-0 and web-1 terminated behind our back, then cycles
    through the proxy under ``faults`` and ``rules`` until converged. ``same_day``: the fleet
    was made through the proxy too, so its client tokens are still remembered (as on AWS)."""
    from tests.integration.aws.support import Rig, boto, make_provider
    from tests.support.fault_proxy import Faults

    from reconciler.embedded import reset

    reset(url)
    proxy.reset(Faults())
    Rig(make_provider(proxy.url if same_day else url)).cycle(fleet, policy)
    ec2 = boto(url, "ec2")
    ids = _instance_ids(ec2)
    gone = {ids["web-0"], ids["web-1"]}
    ec2.terminate_instances(InstanceIds=sorted(gone))
    if same_day:
        proxy.faults = faults  # keep the token memory of the first cycle
    else:
        proxy.reset(faults, seed=3, rules=rules)
    pol = policy.model_copy(update={"sense_deadline_seconds": 2}) if faults.latency_s else policy
    rig = Rig(make_provider(proxy.url))
    if rules is not None:  # the proxy's lag runs on the real clock: so must the cycle's waits
        from reconciler.orchestration.runtime import SystemClock

        rig.clock = SystemClock()  # type: ignore[assignment]
    t0 = time.perf_counter()
    cycles, reports = _until_converged(lambda: rig.cycle(fleet, pol, approve=True))
    wall = time.perf_counter() - t0
    applied, retries, unobserved = _tally(reports)
    names = _names(ec2)
    dup = len(names) - len(set(names))
    if same_day or rules is not None:
        now = _instance_ids(ec2)
        back = sum(1 for n in ("web-0", "web-1") if n in now and now[n] not in gone)
        guard += f" (re-created {back}/2)"
    return Row("aws (moto)", name, cycles, applied, dup, unobserved, retries, wall, guard)


def _instance_ids(ec2: Any) -> dict[str, str]:
    out = {}
    for r in ec2.describe_instances()["Reservations"]:
        for i in r["Instances"]:
            tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
            if i["State"]["Name"] not in ("terminated", "shutting-down") and "Name" in tags:
                out[tags["Name"]] = i["InstanceId"]
    return out


def _names(ec2: Any) -> list[str]:
    return [n for n in (_name(i) for r in ec2.describe_instances()["Reservations"]
                        for i in r["Instances"] if i["State"]["Name"] != "terminated") if n]


def _name(instance: dict[str, Any]) -> str | None:
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    return tags.get("reconciler:name")


def main() -> None:
    import logging

    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-aws", action="store_true")
    parser.add_argument("--only", metavar="TEXT",
                        help="only the aws rows whose fault contains TEXT (no simulated rows)")
    args = parser.parse_args()
    rows = [] if args.only else sim_rows()
    rows += [] if args.skip_aws else aws_rows(args.only)
    print("| provider | fault | cycles to converge | actions applied | duplicates | "
          "deletions of unobserved | retries | wall s | guard |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r.provider} | {r.fault} | {r.cycles} | {r.actions} | {r.duplicates} | "
              f"{r.unobserved_deletes} | {r.retries} | {r.wall_s:.2f} | {r.guard} |")
    bad = [r for r in rows if r.duplicates or r.unobserved_deletes]
    print(f"\nduplicates / unobserved-deletion cells that are not 0: {len(bad)}")


if __name__ == "__main__":
    main()
