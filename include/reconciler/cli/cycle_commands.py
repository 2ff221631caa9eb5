"""``plan`` and ``apply``: a cycle run from the command line, its confirmation and verdict."""

from __future__ import annotations

import argparse
import sys

from reconciler.cli.console import (
    EXIT_APPROVAL,
    EXIT_BUSY,
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    actor,
    out,
)
from reconciler.core.loop import CycleReport, run_cycle, summary
from reconciler.core.model import KindStatus, Plan
from reconciler.core.ports import EventSink
from reconciler.orchestration.runtime import Target
from reconciler.output.render import (
    JsonLinesSink,
    ProgressBar,
    render_incomplete,
    render_report,
)
from reconciler.output.sinks import FanOutSink, default_sink

__all__ = ["cmd_apply", "cmd_plan", "incomplete_kinds", "plan_result"]


def cmd_plan(target: Target, args: argparse.Namespace) -> int:
    report = cycle(target, args, dry_run=True)
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
    report = cycle(target, args, dry_run=args.dry_run, approve=approve,
                    reset_breaker=args.reset_breaker, manual=True, confirmed=confirmed)
    if args.dry_run:
        # the plan's rule for "could not see"; a dry run's changes stay exit 0 (it did its job)
        result = _dry_run_result(target, args, report)
        ok = result != "incomplete" and report.outcome.status in ("in_sync", "reported")
        return EXIT_OK if ok else EXIT_ERROR
    out(args, report_json(report), render_report(report))
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
    preview = cycle(target, args, dry_run=True, manual=True)
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
    again = cycle(target, args, dry_run=True, manual=True, quiet=True)
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
    data = {**report_json(report), "preview": True, "result": plan_result(report, unseen)}
    text = [render_report(report, outcome=False), *render_incomplete(unseen, threshold)]
    out(args, data, "\n".join(text))


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
    data = report_json(report)
    data.update(result=result, completeness_threshold=threshold,
                incomplete_kinds={k: _kind_json(s) for k, s in unseen.items()})
    text = "\n".join([render_report(report), *render_incomplete(unseen, threshold)])
    out(args, data, text)
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



def cycle(target: Target, args: argparse.Namespace, quiet: bool = False,
           **request: object) -> CycleReport:
    only = target.scope(getattr(args, "only_kinds", None), "--only-kinds")
    desired = target.load_desired()
    sinks: list[EventSink] = [default_sink()]
    if not quiet:
        sinks.append(JsonLinesSink() if args.json else ProgressBar())
    req = target.request(desired, only_kinds=only, actor=actor(), **request)
    return run_cycle(req, target.deps(FanOutSink(sinks)))


def report_json(report: CycleReport) -> dict[str, object]:
    data = summary(report)
    if report.plans:
        data["plan"] = report.plans[0].model_dump(mode="json")
    if report.diff is not None:  # reported only: unmanaged resources are never changes
        data["unmanaged"] = [str(k) for k in report.diff.unmanaged]
        data["coverage"] = {kind: {**c.model_dump(mode="json"), "fraction": round(c.fraction, 6)}
                            for kind, c in report.diff.coverage.items()}
    return data

