"""The ``reconcile`` command: validate, plan, apply, import, status, history, breaker reset, sim,
iam-policy."""

from __future__ import annotations

import argparse
import getpass
import importlib.metadata
import json
import logging
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler.core import breaker as brk
from reconciler.core.errors import InvalidConfig, InvalidDesiredState
from reconciler.core.loop import CycleReport, run_cycle, summary
from reconciler.core.model import KindStatus, Plan
from reconciler.core.ports import EventSink
from reconciler.importcmd import import_fleet
from reconciler.orchestration.runtime import Target, load_target
from reconciler.output.render import (
    JsonLinesSink,
    ProgressBar,
    render_incomplete,
    render_report,
    versioned,
    wants_color,
    write_text,
)
from reconciler.output.sinks import FanOutSink, default_sink

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_APPROVAL, EXIT_BUSY = 0, 1, 2, 3, 4


def _version() -> str:
    try:
        return importlib.metadata.version("reconciler")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reconcile", description=__doc__)
    parser.add_argument("--version", action="version", version=f"reconcile {_version()}")
    parser.add_argument("--config", help="targets config (default: $RECONCILER_CONFIG or the "
                        "repository's include/config/targets.yaml)")
    parser.add_argument("--store", help="state store URL (default: $RECONCILER_STORE_URL or "
                        "sqlite under $RECONCILER_HOME)")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--no-color", action="store_true", help=_NO_COLOR_HELP)
    # a subcommand's --no-color must not reset the global one to False when left out
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--no-color", action="store_true", default=argparse.SUPPRESS,
                        help=_NO_COLOR_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in [("validate", "check the config and desired state"),
                        ("plan", "show drift and the plan (read-only)"),
                        ("apply", "run one full cycle"), ("status", "breaker and last cycle"),
                        ("history", "recent cycles")]:
        p = sub.add_parser(name, help=help_, parents=[common])
        p.add_argument("--target", required=True)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name in ("plan", "apply"):
            p.add_argument("--only-kinds", nargs="+", metavar="KIND")
        if name == "apply":
            _apply_options(p)
        if name == "history":
            p.add_argument("--limit", type=_positive, default=20,
                           help=f"at most this many cycles, 1 to {_MAX_LIMIT} (default 20)")
    _import_parser(sub, common)
    iam = sub.add_parser("iam-policy", parents=[common],
                         help="the least-privilege IAM policy an aws target needs (JSON)")
    iam.add_argument("--target", required=True)
    iam.add_argument("--read-only", action="store_true",
                     help="only the read statement (enough for plan and apply --dry-run)")
    iam.add_argument("--caller", action="store_true",
                     help="with options.accounts: what the target's own credentials need "
                          "(sts:AssumeRole on the accounts' roles), not each role")
    breaker = sub.add_parser("breaker", help="circuit breaker", parents=[common])
    breaker.add_argument("action", choices=["reset"])
    breaker.add_argument("--target", required=True)
    sim = sub.add_parser("sim", help="the simulated provider's demo fleet", parents=[common])
    sim.add_argument("action", choices=["seed", "drift"])
    sim.add_argument("--target", required=True)
    sim.add_argument("--fraction", type=_fraction, default=0.3,
                     help="share of the managed resources to drift, from 0 to 1 (default 0.3)")
    sim.add_argument("--seed", type=int, default=7)
    return parser


_NO_COLOR_HELP = "plain output (also: NO_COLOR set, or output not a terminal)"


def _apply_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true",
                   help="do not ask for confirmation on a terminal (never approves a plan "
                        "beyond policy: that takes --approve PLAN_HASH)")
    p.add_argument("--approve", metavar="PLAN_HASH",
                   help="approve the plan with this hash (from `plan` or a refused apply)")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--reset-breaker", action="store_true")


def _import_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("import", parents=[common],
                       help="write desired-state YAML for the live resources (adopt a fleet)")
    p.add_argument("--target", required=True)
    p.add_argument("--kind", action="append", metavar="KIND",
                   help="only this kind (repeatable; default: every kind of the target)")
    p.add_argument("--selector", action="append", metavar="KEY=VALUE", type=_selector,
                   help="only resources with this tag/label (repeatable: all must match)")
    p.add_argument("--out", metavar="PATH",
                   help="write to this new file (default: standard output)")


_MAX_LIMIT = 1_000_000  # far past any history; a bigger number overflows SQLite's integers


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= _MAX_LIMIT:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of 1 or more, up to {_MAX_LIMIT}, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def _selector(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        target = load_target(args.target, args.config, args.store)
        return COMMANDS[args.command](target, args)
    except (InvalidConfig, InvalidDesiredState) as exc:
        what = "configuration" if isinstance(exc, InvalidConfig) else "desired state"
        print(f"error: invalid {what}:", file=sys.stderr)
        for loc, message in exc.problems:
            print(f"  {loc}: {message}", file=sys.stderr)
        return EXIT_ERROR


def cmd_validate(target: Target, args: argparse.Namespace) -> int:
    desired = target.load_desired()
    result = {"target": target.name, "valid": True, "resources": len(desired.resources),
              "version": desired.version}
    _out(args, result, f"valid: {len(desired.resources)} resources, version {desired.version}")
    return EXIT_OK


def cmd_plan(target: Target, args: argparse.Namespace) -> int:
    report = _cycle(target, args, dry_run=True)
    result = _dry_run_result(target, args, report)
    return {"in_sync": EXIT_OK, "changes": EXIT_CHANGES}.get(result, EXIT_ERROR)


def cmd_apply(target: Target, args: argparse.Namespace) -> int:
    # --yes only skips a confirmation; a plan beyond policy is approved by its hash alone
    confirmed: str | None = None
    if _interactive(args):
        answer = _confirm(target, args)
        if isinstance(answer, int):
            return answer
        confirmed = answer
    approve: bool | str = args.approve or False
    # the core applies nothing if the first plan is not the one confirmed (core.loop)
    report = _cycle(target, args, dry_run=args.dry_run, approve=approve,
                    reset_breaker=args.reset_breaker, manual=True, confirmed=confirmed)
    if args.dry_run:
        # the plan's rule for "could not see"; a dry run's changes stay exit 0 (it did its job)
        result = _dry_run_result(target, args, report)
        ok = result != "incomplete" and report.outcome.status in ("in_sync", "reported")
        return EXIT_OK if ok else EXIT_ERROR
    _out(args, _report_json(report), render_report(report))
    status = report.outcome.status
    if status == "busy":
        print(f"another cycle of {target.name} holds its lease (a DAG run or another apply): "
              "nothing done; try again when it finishes", file=sys.stderr)
        return EXIT_BUSY
    if status == "needs_approval":
        _needs_approval(report.plans[-1])
        return EXIT_APPROVAL
    return EXIT_OK if report.outcome.converged else EXIT_ERROR


def _needs_approval(plan: Plan) -> None:
    print(f"plan {plan.hash} needs approval: re-run with --approve {plan.hash}", file=sys.stderr)


def _interactive(args: argparse.Namespace) -> bool:
    """Ask before acting only when a person is at a terminal (stdin and stdout) and gave no
    ``--yes``; off a terminal (cron, CI, pipes) ``apply`` acts without asking, as it always did."""
    return not (args.yes or args.dry_run) and sys.stdin.isatty() and sys.stdout.isatty()


def _confirm(target: Target, args: argparse.Namespace) -> int | str | None:
    """Show the plan and ask (Terraform's way): the confirmed plan's hash (or None: nothing to
    confirm) to go on, or the exit code to stop with.

    The answer is for the plan shown: it is made again just before the cycle, and the cycle
    itself applies nothing unless its first plan has the confirmed hash (core.loop). The
    confirmation approves nothing beyond policy: such a plan still needs ``--approve``.
    """
    preview = _cycle(target, args, dry_run=True, manual=True)
    _show_preview(target, args, preview)
    plan = preview.plans[0] if preview.plans else None
    count = _change_count(plan)
    if plan is None or not count or not plan.validation.ok:
        return None  # nothing to confirm: the cycle records what it finds (in sync, blocked)
    if plan.validation.needs_approval and args.approve != plan.hash:
        _needs_approval(plan)
        return EXIT_APPROVAL
    question = "apply this 1 change?" if count == 1 else f"apply these {count} changes?"
    if not _ask(f"{question} [y/N] "):
        print("apply cancelled: nothing was changed (only y or yes applies)", file=sys.stderr)
        return EXIT_ERROR
    again = _cycle(target, args, dry_run=True, manual=True, quiet=True)
    now = again.plans[0].hash if again.plans else "none"
    if now != plan.hash:
        print(f"the plan changed while you decided ({plan.hash[:12]} -> {now[:12]}): nothing "
              "was changed; run apply again to see the new plan", file=sys.stderr)
        return EXIT_ERROR
    return plan.hash


def _change_count(plan: Plan | None) -> int:
    return 0 if plan is None else len(plan.actions)


def _show_preview(target: Target, args: argparse.Namespace, report: CycleReport) -> None:
    threshold = target.config.policy.completeness_threshold
    unseen = incomplete_kinds(report, threshold)
    data = {**_report_json(report), "preview": True, "result": plan_result(report, unseen)}
    text = [render_report(report, outcome=False), *render_incomplete(unseen, threshold)]
    _out(args, data, "\n".join(text))


def _ask(question: str) -> bool:
    """One line from the terminal: y or yes (any case) is yes; anything else, EOF or ^C is no."""
    print(question, end="", flush=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


def _dry_run_result(target: Target, args: argparse.Namespace, report: CycleReport) -> str:
    """Print what a read-only cycle saw and would do; return its verdict for the exit code.

    ``incomplete`` wins over ``changes``: with a kind unobserved, its "missing" resources are
    what could not be seen, not drift, and CI must not report them as such.
    """
    threshold = target.config.policy.completeness_threshold
    unseen = incomplete_kinds(report, threshold)
    result = plan_result(report, unseen)
    data = _report_json(report)
    data.update(result=result, completeness_threshold=threshold,
                incomplete_kinds={k: _kind_json(s) for k, s in unseen.items()})
    text = "\n".join([render_report(report), *render_incomplete(unseen, threshold)])
    _out(args, data, text)
    return result


def incomplete_kinds(report: CycleReport, threshold: float) -> dict[str, KindStatus]:
    """Kinds in scope observed below the completeness threshold (a failed or partial listing,
    or a doubted empty one): the snapshot holds only the kinds in scope."""
    snap = report.snapshot
    if snap is None:
        return {}
    return {kind: status for kind, status in sorted(snap.kinds.items())
            if status.completeness < threshold}


def plan_result(report: CycleReport, unseen: dict[str, KindStatus]) -> str:
    """``incomplete`` | ``in_sync`` | ``changes`` | ``error`` (nothing was observed at all)."""
    if unseen:
        return "incomplete"
    if report.outcome.status in ("in_sync", "converged"):
        return "in_sync"
    return "changes" if report.plans or report.diff else "error"


def _kind_json(status: KindStatus) -> dict[str, object]:
    return {"completeness": status.completeness, "fidelity": status.fidelity,
            "count": status.count, "errors": list(status.errors)}


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
    _out(args, data, "\n".join(text))
    return EXIT_OK


def cmd_history(target: Target, args: argparse.Namespace) -> int:
    cycles = target.store.recent_cycles(target.name, args.limit)
    rows = [f"{o.finished_at:%F %T}  {o.status:<15} drift {o.initial_drift.magnitude:>6g}"
            f" -> {o.final_drift.magnitude:<6g} actions {o.actions_succeeded:>4} ok "
            f"{o.actions_failed:>3} failed  {o.correlation_id}" for o in cycles]
    data = {"target": target.name, "cycles": [o.model_dump(mode="json") for o in cycles]}
    _out(args, data, "\n".join(rows) or "no cycles yet")
    return EXIT_OK


def cmd_breaker(target: Target, args: argparse.Namespace) -> int:
    before = target.store.load_breaker(target.name)
    after = target.store.update_breaker(target.name, brk.reset)
    target.store.record_operator(target.name, _actor(), "breaker_reset",
                                 {"from": before.state, "to": after.state})
    print(f"breaker {target.name}: {before.state} -> {after.state}")
    return EXIT_OK


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


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


def _cycle(target: Target, args: argparse.Namespace, quiet: bool = False,
           **request: object) -> CycleReport:
    only = target.scope(getattr(args, "only_kinds", None), "--only-kinds")
    desired = target.load_desired()
    sinks: list[EventSink] = [default_sink()]
    if not quiet:
        sinks.append(JsonLinesSink() if args.json else ProgressBar())
    req = target.request(desired, only_kinds=only, actor=_actor(), **request)
    return run_cycle(req, target.deps(FanOutSink(sinks)))


def _report_json(report: CycleReport) -> dict[str, object]:
    data = summary(report)
    if report.plans:
        data["plan"] = report.plans[0].model_dump(mode="json")
    if report.diff is not None:  # reported only: unmanaged resources are never changes
        data["unmanaged"] = [str(k) for k in report.diff.unmanaged]
        data["coverage"] = {kind: {**c.model_dump(mode="json"), "fraction": round(c.fraction, 6)}
                            for kind, c in report.diff.coverage.items()}
    return data


def _out(args: argparse.Namespace, data: Mapping[str, Any], text: str) -> None:
    """``data`` as one JSON document (``--json``, with ``format_version``), else ``text``,
    coloured on a terminal unless ``--no-color`` or ``NO_COLOR`` says not to."""
    if getattr(args, "json", False):
        print(json.dumps(versioned(data), default=str), flush=True)
        return
    write_text(text, sys.stdout, wants_color(sys.stdout, getattr(args, "no_color", False)))


COMMANDS: dict[str, Callable[[Target, argparse.Namespace], int]] = {
    "validate": cmd_validate, "plan": cmd_plan, "apply": cmd_apply, "status": cmd_status,
    "history": cmd_history, "breaker": cmd_breaker, "sim": cmd_sim, "import": cmd_import,
    "iam-policy": cmd_iam_policy,
}
