"""The ``reconcile`` commands other than a cycle: validate, import, iam-policy, status, history,
breaker reset, sim."""

from __future__ import annotations

import argparse
import json
import random
import sys

from reconciler.cli.console import EXIT_ERROR, EXIT_OK, actor, out
from reconciler.core import breaker as brk
from reconciler.importcmd import import_fleet
from reconciler.orchestration.runtime import Target

__all__ = ["cmd_breaker", "cmd_history", "cmd_iam_policy", "cmd_import", "cmd_sim", "cmd_status",
           "cmd_validate"]


def cmd_validate(target: Target, args: argparse.Namespace) -> int:
    desired = target.load_desired()
    result = {"target": target.name, "valid": True, "resources": len(desired.resources),
              "version": desired.version}
    out(args, result, f"valid: {len(desired.resources)} resources, version {desired.version}")
    return EXIT_OK



def cmd_import(target: Target, args: argparse.Namespace) -> int:
    ok = import_fleet(target, args.kind, args.selector or (), args.out)
    return EXIT_OK if ok else EXIT_ERROR


def cmd_iam_policy(target: Target, args: argparse.Namespace) -> int:
    """AWS's own policy document, printed as is (no ``format_version``: it is pasted into IAM)."""
    from reconciler.providers.aws.iam import caller_policy, policy
    from reconciler.providers.aws.session import parse_options

    if target.config.provider.type != "aws":
        print(f"error: target {target.name} uses the {target.config.provider.type} provider; "
              "only aws targets need an IAM policy", file=sys.stderr)
        return EXIT_ERROR
    options = parse_options(target.config.provider.options)
    accounts = options.accounts or ()
    roles = [a.role_arn for a in accounts if a.role_arn]
    if args.caller:
        document = caller_policy(target.name, target.kinds(), roles,
                                 direct=len(roles) < len(accounts) or not accounts,
                                 read_only=args.read_only)
    else:
        document = policy(target.name, target.kinds(), read_only=args.read_only)
        if roles:
            print(f"the policy of each account's role ({len(roles)} roles); --caller prints "
                  "what the target's own credentials need to assume them", file=sys.stderr)
    print(json.dumps(document, indent=2))
    return EXIT_OK


def cmd_status(target: Target, args: argparse.Namespace) -> int:
    breaker = target.store.load_breaker(target.name)
    last = target.store.recent_cycles(target.name, 1)
    data = {"target": target.name, "breaker": breaker.model_dump(mode="json"),
            "last_cycle": last[0].model_dump(mode="json") if last else None}
    text = [f"target {target.name}: breaker {breaker.state}"
            f" ({breaker.consecutive_failures} consecutive failed cycles)"]
    if last:
        o = last[0]
        text.append(f"last cycle {o.correlation_id}: {o.status} at {o.finished_at:%F %T} UTC, "
                    f"drift {o.final_drift.urgency} {o.final_drift.magnitude:g}")
    out(args, data, "\n".join(text))
    return EXIT_OK


def cmd_history(target: Target, args: argparse.Namespace) -> int:
    cycles = target.store.recent_cycles(target.name, args.limit)
    rows = [f"{o.finished_at:%F %T}  {o.status:<15} drift {o.initial_drift.magnitude:>6g}"
            f" -> {o.final_drift.magnitude:<6g} actions {o.actions_succeeded:>4} ok "
            f"{o.actions_failed:>3} failed  {o.correlation_id}" for o in cycles]
    data = {"target": target.name, "cycles": [o.model_dump(mode="json") for o in cycles]}
    out(args, data, "\n".join(rows) or "no cycles yet")
    return EXIT_OK


def cmd_breaker(target: Target, args: argparse.Namespace) -> int:
    before = target.store.load_breaker(target.name)
    after = target.store.update_breaker(target.name, brk.reset)
    target.store.record_operator(target.name, actor(), "breaker_reset",
                                 {"from": before.state, "to": after.state})
    print(f"breaker {target.name}: {before.state} -> {after.state}")
    return EXIT_OK


def cmd_sim(target: Target, args: argparse.Namespace) -> int:
    from reconciler.providers import simulated

    if target.config.provider.type != "simulated":
        print(f"target {target.name} does not use the simulated provider", file=sys.stderr)
        return EXIT_ERROR
    provider = target.provider
    assert isinstance(provider, simulated.SimulatedProvider)
    if args.action == "seed":
        simulated.seed_demo(provider, target.load_desired())
        print(f"seeded {target.name}: fleet now matches the desired state")
    else:
        for line in simulated.inject_drift(provider.path, random.Random(args.seed), args.fraction):
            print(f"drift: {line}")
    return EXIT_OK

