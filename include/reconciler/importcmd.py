"""``reconcile import``: observe a target's scope and write it as desired-state YAML."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from reconciler.catalogue import importer
from reconciler.core.model import Snapshot
from reconciler.core.sense import SenseOptions, sense
from reconciler.orchestration.runtime import SystemClock, Target, new_correlation_id
from reconciler.output.render import render_incomplete

__all__ = ["import_fleet"]


def import_fleet(target: Target, wanted_kinds: Sequence[str] | None,
                 selectors: Sequence[tuple[str, str]], out: str | None) -> bool:
    """Write the live fleet in the target's scope as desired YAML (to ``out``, a new file, or
    stdout); False (nothing written) if a kind in scope was not fully observed, since a partial
    import, once applied, would delete what it missed, or if a resource does not fit its schema.
    """
    kinds = _import_kinds(target, wanted_kinds)
    if kinds is None:
        return False
    snap = _observe(target, kinds)
    unseen = {k: s for k, s in sorted(snap.kinds.items()) if not s.complete}
    if unseen:
        for line in render_incomplete(unseen, 1.0):
            print(line, file=sys.stderr)
        print("import refused: nothing written (a partial import would drop what it missed)",
              file=sys.stderr)
        return False
    result = importer.import_resources(snap, kinds, selectors)
    if result.problems:
        print("import refused: nothing written; these resources do not fit their kind's "
              "schema:", *(f"  {p}" for p in result.problems), sep="\n", file=sys.stderr)
        return False
    text = importer.to_yaml(result, _header(target, kinds, selectors))
    if out and not _write_new(Path(out), text):
        return False
    if not out:
        sys.stdout.write(text)
    _summary(result, out)
    return True


def _import_kinds(target: Target, wanted: Sequence[str] | None) -> tuple[str, ...] | None:
    served = target.kinds()
    unknown = sorted(set(wanted or ()) - set(served))
    if unknown:
        print(f"target {target.name} has no kind {', '.join(unknown)} (its kinds: "
              f"{', '.join(served)})", file=sys.stderr)
        return None
    return tuple(k for k in served if not wanted or k in wanted)


def _observe(target: Target, kinds: tuple[str, ...]) -> Snapshot:
    policy, cid = target.config.policy, new_correlation_id(target.name)
    options = SenseOptions(deadline_s=policy.sense_deadline_seconds,
                           last_counts=target.store.listing_counts(target.name, cid),
                           doubt_empty_from=policy.doubt_empty_from)
    return sense(target.provider, kinds, target=target.name, correlation_id=cid,
                 clock=SystemClock(), options=options)


def _header(target: Target, kinds: tuple[str, ...],
            selectors: Sequence[tuple[str, str]]) -> list[str]:
    chosen = " ".join(f"--selector {k}={v}" for k, v in selectors)
    return [f"Written by `reconcile import --target {target.name}` ({', '.join(kinds)}"
            f"{'; ' + chosen if chosen else ''}).",
            "Review before use: sla, depends_on, ignore_fields and tolerance cannot be observed",
            "and are left at their defaults. Container environment values are never written:",
            "each is null (which `reconcile validate` rejects) until you fill it in."]


def _write_new(path: Path, text: str) -> bool:
    """Write ``text`` to a new file; an existing one is never overwritten (it may be desired
    state someone edited)."""
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        print(f"{path} exists: nothing written (remove it or choose another --out)",
              file=sys.stderr)
        return False
    except OSError as exc:
        print(f"cannot write {path}: {exc.strerror}", file=sys.stderr)
        return False
    return True


def _summary(result: importer.ImportResult, out: str | None) -> None:
    items = result.resources
    unowned = sum(not r.owned for r in items)
    hidden = sum(len(r.hidden) for r in items)
    where = f" to {out}" if out else ""
    print(f"imported {len(items)} resources{where} ({unowned} not owned yet: plan and apply "
          f"them with policy.adopt; {hidden} environment values left to fill in)",
          file=sys.stderr)
