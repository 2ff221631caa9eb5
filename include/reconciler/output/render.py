"""Human-readable output of diffs, plans and outcomes, and a terminal progress bar."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from reconciler.core.loop import CycleReport
from reconciler.core.model import (
    Diff,
    Event,
    FieldChange,
    KindCoverage,
    KindStatus,
    Outcome,
    Plan,
)
from reconciler.digests import is_digest

__all__ = ["render_report", "render_outcome", "coverage_lines", "coverage_figure",
           "render_incomplete",
           "ProgressBar", "JsonLinesSink", "short", "FORMAT_VERSION", "versioned",
           "wants_color", "style_of", "write_text"]

FORMAT_VERSION = 1  # of every JSON document the CLI prints; bumped only on a breaking change

_SYMBOL = {"create": "+", "update": "~", "delete": "-"}
_MAX_LINES = 200


def short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_diff(diff: Diff) -> list[str]:
    lines = [f"  + {r.key}" for r in diff.additions]
    for mod in diff.modifications:
        fields = ", ".join(_change(c) for c in mod.changes[:4])
        lines.append(f"  ~ {mod.key}  ({fields}{', ...' if len(mod.changes) > 4 else ''})")
    lines += [f"  - {r.key}" for r in diff.deletions]
    lines += [f"  ! {k}  (exists but is not owned by this target: left alone)"
              for k in diff.conflicts]
    lines += [f"  = {k}  (protected-orphaned: not desired, but protected: kept)"
              for k in diff.protected_orphans]
    return _clip(lines) + _unmanaged(diff)


_UNMANAGED_SHOWN = 20  # per kind; --json lists up to core.compare.UNMANAGED_LISTED


def _unmanaged(diff: Diff) -> list[str]:
    """``?`` lines: resources in scope no target owns (never acted on), with coverage per kind."""
    lines: list[str] = []
    for kind, cov in diff.coverage.items():
        if not cov.unmanaged and not cov.ignored:
            continue
        keys = [k for k in diff.unmanaged if k.kind == kind]
        lines += [f"  ? {k}  (not owned by any target: not managed, never touched)"
                  for k in keys[:_UNMANAGED_SHOWN]]
        if cov.unmanaged > min(len(keys), _UNMANAGED_SHOWN):
            lines.append(f"  ? ... {cov.unmanaged - min(len(keys), _UNMANAGED_SHOWN):,} more "
                         f"{kind} unmanaged (use --json)")
    return lines + coverage_lines(diff)


def coverage_lines(diff: Diff) -> list[str]:
    """'Coverage: ec2.Instance: 1,140 of 1,240 managed (92%)', for each kind with unowned ones."""
    lines = []
    for kind, cov in diff.coverage.items():
        if not cov.unmanaged and not cov.ignored:
            continue
        ignored = f"; {cov.ignored:,} ignored (policy.unmanaged_ignore)" if cov.ignored else ""
        lines.append(f"Coverage: {kind}: {coverage_figure(cov)}{ignored}")
    return lines


def coverage_figure(cov: KindCoverage) -> str:
    """'1,140 of 1,240 managed (92%)': whole percent, never rounded up to 100% (or down to 0%)
    while any resource is left out (or in)."""
    pct = round(cov.fraction * 100)
    if pct == 100 and cov.fraction < 1:
        shown = ">99%"
    elif pct == 0 and cov.fraction > 0:
        shown = "<1%"
    else:
        shown = f"{pct}%"
    return f"{cov.managed:,} of {cov.seen:,} managed ({shown})"


def _change(c: FieldChange) -> str:
    if is_digest(c.before) or is_digest(c.after):  # a secret value: only that it changed
        return f"{c.path}: changed"
    return f"{c.path}: {short(c.before, 30)} -> {short(c.after, 30)}"


def render_plan(plan: Plan) -> list[str]:
    a = plan.audit
    lines = [f"Plan {plan.hash[:12]}: {a.counts.get('create', 0)} to create, "
             f"{a.counts.get('update', 0)} to update, {a.counts.get('delete', 0)} to delete, "
             f"{a.counts.get('blocked', 0)} blocked; max risk {a.max_risk}, "
             f"~{a.estimated_duration_s:g}s"]
    for wave in plan.waves:
        lines.append(f"  wave {wave.index + 1} ({len(wave.actions)} actions, rollback point)")
        lines += [f"    {_SYMBOL[x.type]} {x.target}  [risk {x.risk}"
                  f"{'' if x.reversible else ', irreversible'}]" for x in wave.actions[:20]]
        if len(wave.actions) > 20:
            lines.append(f"    ... {len(wave.actions) - 20} more")
    lines += [f"  blocked {b.change} {b.key}: {b.reason}" for b in a.blocked[:20]]
    lines += [f"  INVALID: {e}" for e in plan.validation.errors]
    lines += [f"  needs approval: {r}" for r in plan.validation.approval_reasons]
    return _clip(lines)


def render_outcome(outcome: Outcome) -> list[str]:
    d0, d1 = outcome.initial_drift, outcome.final_drift
    lines = [
        f"Outcome: {outcome.status}  (converged: {'yes' if outcome.converged else 'no'}, "
        f"passes: {outcome.iterations}, correlation id: {outcome.correlation_id})",
        f"  drift: {d0.urgency} {d0.magnitude:g} -> {d1.urgency} {d1.magnitude:g}; actions: "
        f"{outcome.actions_succeeded} succeeded, {outcome.actions_failed} failed, "
        f"{outcome.actions_skipped} skipped",
    ]
    if outcome.error:
        lines.append(f"  reason: {outcome.error}")
    return lines


def render_report(report: CycleReport, outcome: bool = True) -> str:
    """What a cycle saw, the drift, the first plan and (unless ``outcome`` is False: a preview
    before a confirmation) how it ended."""
    lines: list[str] = []
    if report.snapshot is not None:
        snap = report.snapshot
        lines.append(f"Observed {len(snap.resources)} resources in {snap.latency_s:.3f}s "
                     f"(fidelity {snap.fidelity}, completeness {snap.completeness:.0%})")
        lines += [f"  {k}: {s.completeness:.0%} {'; '.join(s.errors)}"
                  for k, s in snap.kinds.items() if s.errors]
    if report.diff is not None:
        d = report.outcome.initial_drift
        lines.append(f"Drift: {d.urgency} (magnitude {d.magnitude:g}, {d.drifted} of {d.total} "
                     f"resources, {d.fraction:.0%})")
        lines += render_diff(report.diff)
    if report.plans:
        lines += render_plan(report.plans[0])
    if outcome:
        lines += render_outcome(report.outcome)
    return "\n".join(lines)


def render_incomplete(unseen: Mapping[str, KindStatus], threshold: float) -> list[str]:
    """The verdict when some kinds were not fully observed: what is above is only what was seen."""
    if not unseen:
        return []
    lines = [f"Incomplete: {len(unseen)} kind(s) observed below completeness_threshold "
             f"{threshold:.0%}; the drift and plan above show only what was seen, and no "
             "change to these kinds is planned:"]
    for kind, status in unseen.items():
        why = "; ".join(status.errors[:3]) or "listing incomplete"
        lines.append(f"  {kind}: {status.completeness:.0%} observed: {why}")
    return lines


def _clip(lines: list[str]) -> list[str]:
    if len(lines) <= _MAX_LINES:
        return lines
    return lines[:_MAX_LINES] + [f"  ... {len(lines) - _MAX_LINES} more lines (use --json)"]


def versioned(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with ``format_version`` as its first key (every JSON document the CLI prints)."""
    return {"format_version": FORMAT_VERSION, **data}


def wants_color(stream: TextIO, no_color: bool = False,
                environ: Mapping[str, str] = os.environ) -> bool:
    """Colour only on a terminal, and never with ``--no-color`` or a non-empty ``NO_COLOR``
    (https://no-color.org)."""
    if no_color or environ.get("NO_COLOR", ""):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# (first token of a stripped line, style): the diff and plan symbols, then the headings
_STYLES: tuple[tuple[str, str], ...] = (
    ("+ ", "green"), ("~ ", "yellow"), ("- ", "red"), ("! ", "magenta"), ("= ", "cyan"),
    ("? ", "blue"), ("Coverage:", "bold"),
    ("blocked ", "red"), ("INVALID:", "bold red"), ("needs approval:", "bold yellow"),
    ("Incomplete:", "bold red"), ("Outcome: converged", "bold green"),
    ("Outcome: in_sync", "bold green"), ("Outcome:", "bold red"), ("Plan ", "bold"),
    ("Drift: none", "bold green"), ("Drift:", "bold yellow"),
)


def style_of(line: str) -> str | None:
    """The rich style of one rendered line, by its leading symbol or heading."""
    stripped = line.lstrip()
    return next((style for head, style in _STYLES if stripped.startswith(head)), None)


def write_text(text: str, stream: TextIO, color: bool) -> None:
    """Print rendered text; with ``color``, each line styled by :func:`style_of` (rich).

    Without colour the text goes out byte for byte as rendered (pipes, files, ``NO_COLOR``),
    and rich is not even imported.
    """
    if not color:
        stream.write(text + "\n")
        stream.flush()
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(file=stream, force_terminal=True, color_system="standard",
                      highlight=False, markup=False, emoji=False, soft_wrap=True)
    for line in text.split("\n"):
        console.print(Text(line, style=style_of(line) or ""))
    stream.flush()


class ProgressBar:
    """An EventSink drawing ``[####....] done/total`` on a terminal; silent elsewhere."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.enabled = stream.isatty()

    def emit(self, event: Event) -> None:
        if not self.enabled:
            return
        if event.type == "rollback_initiated":
            self.stream.write(f"\nrolling back wave {event.detail.get('wave')}\n")
        total = event.detail.get("total")
        if event.type in ("action_completed", "action_failed") and isinstance(total, int):
            done = int(event.detail.get("done", 0))  # type: ignore[call-overload]
            filled = self.width * done // max(1, total)
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}")
            if done >= total:
                self.stream.write("\n")
            self.stream.flush()


class JsonLinesSink:
    """Every event as one JSON line (``--json``)."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream

    def emit(self, event: Event) -> None:
        self.stream.write(json.dumps(versioned(event.model_dump(mode="json"))) + "\n")
        self.stream.flush()
