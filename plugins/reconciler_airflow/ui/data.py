"""Read models for the dashboard, from the targets config and the state store only.

Nothing here calls a provider: the dashboard must answer at 3 a.m. while the cloud is down.
Artifacts are read only from the target's local artifact folder (an ``s3://`` artifact is
named, not fetched; a path elsewhere is not opened).
Every value returned is JSON-safe, so the HTML pages and the JSON API share one shape.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reconciler.config import config_path, load_config_lenient
from reconciler.core.model import KindCoverage, Outcome
from reconciler.digests import is_digest
from reconciler.output.artifacts import artifact_location
from reconciler.output.render import coverage_figure
from reconciler.store import SqlStore, open_store
from reconciler.store.schema import cycles
from reconciler_airflow.ui.runlinks import RUN_LINK, run_link

__all__ = ["store", "target_names", "dag_id", "target_summary", "cycle_detail", "audit_trail",
           "parse_time", "MAX_ARTIFACT_BYTES"]

HISTORY = 30  # cycles in the drift chart
MAX_ARTIFACT_BYTES = 4 << 20
MAX_LISTED = 200  # rows per diff section / plan wave shown


@lru_cache(maxsize=4)
def _store(url: str | None) -> SqlStore:
    return open_store(url)


def store() -> SqlStore:
    """The process's store ($RECONCILER_STORE_URL), opened once: the engine pools connections."""
    return _store(os.environ.get("RECONCILER_STORE_URL") or None)


def target_names() -> list[str]:
    """Valid targets of the targets config (an invalid one is left out, as the DAGs do)."""
    config, _ = load_config_lenient(config_path())
    return sorted(config.targets)


def dag_id(target: str) -> str:
    return f"reconcile__{target}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _cycle_brief(o: Outcome) -> dict[str, Any]:
    return {"correlation_id": o.correlation_id, "status": o.status, "converged": o.converged,
            "started_at": _iso(o.started_at), "finished_at": _iso(o.finished_at),
            "duration_s": round((o.finished_at - o.started_at).total_seconds(), 3),
            "initial_magnitude": o.initial_drift.magnitude,
            "final_magnitude": o.final_drift.magnitude, "urgency": o.initial_drift.urgency,
            "actions_succeeded": o.actions_succeeded, "actions_failed": o.actions_failed,
            "dry_run": o.dry_run, "trigger": o.trigger, "error": o.error,
            "desired_version": o.desired_version}


def _drifting_since(history: list[Outcome]) -> str | None:
    """Start of the unbroken run of newest cycles that ended with drift left."""
    since = None
    for o in history:  # newest first
        if o.final_drift.urgency == "none":
            break
        since = o.started_at
    return _iso(since)


def target_summary(st: SqlStore, name: str, history: int = HISTORY) -> dict[str, Any]:
    """One row of the overview: urgency, drift, last outcome, desired version, breaker."""
    recent = st.recent_cycles(name, history)
    last = recent[0] if recent else None
    breaker = st.load_breaker(name)
    lease = st.lease_holder(name)
    drift = last.final_drift if last else None
    return {
        "name": name, "dag_id": dag_id(name),
        "urgency": drift.urgency if drift else "unknown",
        "magnitude": drift.magnitude if drift else None,
        "drifted": drift.drifted if drift else None, "total": drift.total if drift else None,
        "drifting_since": _drifting_since(recent),
        "desired_version": last.desired_version if last else None,
        "last": _cycle_brief(last) if last else None,
        "breaker": {**breaker.model_dump(mode="json"), "open": breaker.state == "open"},
        "running": {"correlation_id": lease[0], "lease_expires_at": _iso(lease[1])}
        if lease else None,
        "history": [_cycle_brief(o) for o in reversed(recent)],  # oldest first, for the chart
    }


def _outcome(st: SqlStore, name: str, correlation_id: str) -> Outcome | None:
    query = sa.select(cycles.c.outcome_json).where(cycles.c.target == name,
                                                   cycles.c.correlation_id == correlation_id)
    with st.engine.connect() as conn:
        raw = conn.execute(query).scalar()
    return Outcome.model_validate_json(raw) if raw else None


def artifact_root(name: str) -> str | None:
    """The target's artifact location as its pipeline computes it; None for an unknown target."""
    config, _ = load_config_lenient(config_path())
    target = config.targets.get(name)
    return None if target is None else artifact_location(target.artifacts, name)


def read_artifact(ref: str | None, root: str | None) -> tuple[Any, str | None]:
    """(JSON, None) from a local artifact under ``root``, or (None, why not): S3 is never
    fetched from here, and a path outside the target's artifact folder is never opened (a
    reference comes from the store, which any store writer can set to any path)."""
    if not ref:
        return None, "not recorded"
    if ref.startswith("s3://"):
        return None, f"stored at {ref}; not fetched (the dashboard never calls the cloud)"
    if root is None or root.startswith("s3://") or not _inside(Path(ref), Path(root)):
        return None, f"{ref} is outside the target's artifact folder; not opened"
    path = Path(ref)
    try:
        size = path.stat().st_size
        if size > MAX_ARTIFACT_BYTES:
            return None, f"{ref} is {size >> 20} MiB; too large to show here"
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as exc:
        return None, f"{ref}: {type(exc).__name__}"


def _inside(path: Path, root: Path) -> bool:
    # resolve() follows symlinks and "..": a link in the folder to /etc is outside
    return path.resolve().is_relative_to(root.resolve())


HIDDEN = "(hidden)"


def hidden(value: Any) -> Any:
    """``value`` with every digest of a secret value (reconciler.digests) shown as "(hidden)"."""
    if is_digest(value):
        return HIDDEN
    if isinstance(value, dict):
        return {k: hidden(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hidden(v) for v in value]
    return value


def _change_view(change: dict[str, Any]) -> dict[str, Any]:
    """A field change; one between digests is only "changed": the digests mean nothing to read."""
    before, after = change.get("before"), change.get("after")
    if is_digest(before) or is_digest(after):
        return {"path": change.get("path"), "secret": True}
    return {**change, "secret": False, "before": hidden(before), "after": hidden(after)}


def _diff_view(diff: dict[str, Any]) -> dict[str, Any]:
    def key(k: dict[str, Any]) -> str:
        return f"{k['kind']}/{k['name']}"

    adds = [{"key": key(r["key"]), "spec": hidden(r.get("spec"))}
            for r in diff.get("additions", ())]
    mods = [{"key": key(m["key"]), "changes": [_change_view(c) for c in m.get("changes", ())]}
            for m in diff.get("modifications", ())]
    dels = [{"key": key(r["key"]), "managed": r.get("managed", True)}
            for r in diff.get("deletions", ())]
    return {"counts": {"add": len(adds), "modify": len(mods), "delete": len(dels),
                       "unchanged": diff.get("unchanged", 0),
                       "conflicts": len(diff.get("conflicts", ()))},
            "additions": adds[:MAX_LISTED], "modifications": mods[:MAX_LISTED],
            "deletions": dels[:MAX_LISTED],
            "conflicts": [key(k) for k in diff.get("conflicts", ())][:MAX_LISTED],
            "unmanaged": unmanaged_view(diff)}


def unmanaged_view(diff: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Per kind in scope: the coverage figure and the resources no target owns (never acted
    on), from a diff artifact; None for an artifact written before coverage was recorded."""
    if "coverage" not in diff:
        return None
    keys: dict[str, list[str]] = {}
    for k in diff.get("unmanaged", ()):
        keys.setdefault(k["kind"], []).append(f"{k['kind']}/{k['name']}")
    out = []
    for kind, raw in sorted(diff["coverage"].items()):
        cov = KindCoverage.model_validate(raw)
        listed = keys.get(kind, [])[:MAX_LISTED]
        out.append({"kind": kind, **cov.model_dump(), "fraction": round(cov.fraction, 6),
                    "figure": coverage_figure(cov), "resources": listed,
                    "more": max(0, cov.unmanaged - len(listed))})
    return out


def _plan_view(plan: dict[str, Any], decisions: list[dict[str, Any]],
               finished: bool) -> dict[str, Any]:
    validation, audit = plan.get("validation", {}), plan.get("audit", {})
    mine = [d for d in decisions if d["payload"]["detail"].get("plan_hash") == plan["hash"]]
    if not validation.get("needs_approval"):
        approval = "not required"
    elif mine:
        what = mine[0]["payload"]["what"]
        approval = f"{'approved' if what == 'plan_approved' else 'rejected'} by {mine[0]['actor']}"
    else:
        approval = "not approved" if finished else "waiting for approval"
    waves = [{"index": w["index"], "size": len(w["actions"]),
              "actions": [{"id": a["id"], "type": a["type"],
                           "key": f"{a['target']['kind']}/{a['target']['name']}",
                           "risk": a.get("risk"), "reversible": a.get("reversible"),
                           "estimated_duration_s": a.get("estimated_duration_s")}
                          for a in w["actions"][:MAX_LISTED]]}
             for w in plan.get("waves", ())]
    return {"hash": plan["hash"], "desired_version": plan.get("desired_version"),
            "waves": waves, "rollback_points": plan.get("rollback_points", []),
            "max_risk": audit.get("max_risk"), "counts": audit.get("counts", {}),
            "estimated_duration_s": audit.get("estimated_duration_s"),
            "blocked": audit.get("blocked", []), "needs_approval": validation.get("needs_approval"),
            "approval_reasons": validation.get("approval_reasons", []),
            "errors": validation.get("errors", []), "approval": approval, "preview": False,
            "degradation": {"reasons": [], "max_parallel": None, "allow_deletions": True,
                            "poke_factor": 1.0, **(plan.get("degradation") or {})}}


def _action_view(row: dict[str, Any]) -> dict[str, Any]:
    p = row["payload"]
    return {"action_id": p["action_id"], "key": f"{p['key']['kind']}/{p['key']['name']}",
            "type": p["type"], "state": p["state"], "outcome": p.get("outcome"),
            "attempts": p.get("attempts"), "error": p.get("error"), "wave": p.get("wave"),
            "rollback": p.get("rollback", False), "started_at": p.get("started_at"),
            "finished_at": p.get("finished_at"), "duration_s": p.get("duration_s")}


def action_states(rows: list[dict[str, Any]], plans: list[dict[str, Any]],
                  started: set[str] | None = None) -> list[dict[str, Any]]:
    """One line per action of the cycle, in its state now: ``pending`` (planned, not started),
    ``running`` (started — its ``action_started`` event is in ``started`` — no result yet),
    ``succeeded``, ``failed``, ``skipped``, or ``rolled_back`` (succeeded, then undone), from its
    last recorded result (``attempts`` counts every try), then the rollback's own results.
    ``rows`` are the cycle's action rows, oldest first."""
    last: dict[str, dict[str, Any]] = {}
    undo: list[dict[str, Any]] = []
    for row in rows:
        view = _action_view(row)
        if view["rollback"]:
            undo.append(view)
        else:
            last[view["action_id"]] = view  # a later attempt's result replaces an earlier one
    undone = {u["action_id"].removesuffix("#undo") for u in undo if u["state"] == "succeeded"}
    for aid in undone & last.keys():
        if last[aid]["state"] == "succeeded":
            last[aid] = {**last[aid], "state": "rolled_back"}
    running = started or set()
    pending = [{"action_id": a["id"], "key": f"{a['target']['kind']}/{a['target']['name']}",
                "type": a["type"], "state": "running" if a["id"] in running else "pending",
                "wave": w["index"], "rollback": False, "attempts": 0, "outcome": None,
                "error": None, "duration_s": None}
               for plan in plans[-1:] for w in plan["payload"].get("waves", ())
               for a in w["actions"] if a["id"] not in last]
    return sorted([*last.values(), *pending], key=lambda v: (v["wave"] or 0, v["action_id"])) \
        + undo


def cycle_detail(st: SqlStore, name: str, correlation_id: str) -> dict[str, Any] | None:
    """A cycle: outcome, diff, plans with approval status, action results, events, run link."""
    outcome = _outcome(st, name, correlation_id)
    rows = st.audit_rows(target=name, correlation_id=correlation_id, limit=20_000)
    if outcome is None and not rows:
        return None
    rows.reverse()  # oldest first
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    operator = by_kind.get("operator", [])
    decisions = [r for r in operator if r["payload"]["what"] in ("plan_approved", "plan_rejected")]
    plans = [_plan_view(r["payload"], decisions, outcome is not None)
             for r in by_kind.get("plan", [])]
    link = run_link(st, name, correlation_id) or {}
    root = artifact_root(name)
    diff, diff_note = read_artifact(link.get("diff_ref"), root)
    if not plans and link.get("preview_ref"):
        preview, _ = read_artifact(link["preview_ref"], root)
        if preview:
            plans = [{**_plan_view(preview, decisions, True), "preview": True}]
    return {
        "target": name, "dag_id": link.get("dag_id", dag_id(name)),
        "correlation_id": correlation_id, "run": link or None,
        "outcome": outcome.model_dump(mode="json") if outcome else None,
        "diff": _diff_view(diff) if isinstance(diff, dict) else None, "diff_note": diff_note,
        "plans": plans,
        "actions": action_states(by_kind.get("action", []), by_kind.get("plan", []),
                                 {r["action_id"] for r in by_kind.get("event", [])
                                  if r["payload"]["type"] == "action_started"}),
        "events": [{"at": _iso(r["at"]), "type": r["payload"]["type"],
                    "action_id": r["action_id"], "detail": r["payload"].get("detail", {})}
                   for r in by_kind.get("event", [])],
        "operator": [{"at": _iso(r["at"]), "actor": r["actor"], "what": r["payload"]["what"],
                      "detail": r["payload"].get("detail", {})}
                     for r in operator if r["payload"]["what"] != RUN_LINK],
    }


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time or date from a filter box; naive means UTC. Empty means no bound."""
    if not text or not text.strip():
        return None
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _summary(row: dict[str, Any]) -> str:
    p, kind = row["payload"], row["kind"]
    if kind == "operator":
        detail = ", ".join(f"{k}={v}" for k, v in sorted((p.get("detail") or {}).items()))
        return f"{p.get('what')}" + (f" ({detail})" if detail else "")
    if kind == "event":
        detail = ", ".join(f"{k}={v}" for k, v in sorted((p.get("detail") or {}).items())
                           if v is not None)
        return f"{p.get('type')}" + (f" ({detail})" if detail else "")
    if kind == "action":
        error = f": {p['error']}" if p.get("error") else ""
        undo = " rollback" if p.get("rollback") else ""
        return f"{p['type']}{undo} {p['key']['kind']}/{p['key']['name']} -> {p['state']} " \
               f"after {p.get('attempts', 0)} attempt(s){error}"
    counts = (p.get("audit") or {}).get("counts", {})
    approval = " needs approval" if (p.get("validation") or {}).get("needs_approval") else ""
    return f"plan {p.get('hash')} {json.dumps(counts, sort_keys=True)}{approval}"


def audit_trail(st: SqlStore, targets: list[str], since: datetime | None,
                until: datetime | None, kind: str | None, limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` audit rows of the given targets (one query), newest first, each with a
    one-line summary."""
    rows = st.audit_rows(targets=targets, since=since, until=until,
                         kind=kind, limit=limit)  # type: ignore[arg-type]
    return [{"id": r["id"], "at": _iso(r["at"]), "target": r["target"], "kind": r["kind"],
             "actor": r["actor"], "correlation_id": r["correlation_id"],
             "action_id": r["action_id"], "summary": _summary(r)} for r in rows]
