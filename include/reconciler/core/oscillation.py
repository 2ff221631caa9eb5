"""Fighting controllers: a field we had to set again in each of the last N cycles is flapping.

Something else (an autoscaler, a human, another controller) keeps reverting it. Acting again
would loop forever, so compare stops acting on such a field and reports it instead; listing it
in ``ignore_fields`` resolves the fight for good.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from reconciler.core.model import Action, ActionResult

__all__ = ["change_id", "changed_fields", "flapping"]


def change_id(key: str, path: str) -> str:
    return f"{key}:{path}"


def changed_fields(actions: Iterable[Action], results: Iterable[ActionResult]) -> tuple[str, ...]:
    """The ``kind/name:path`` of every field an update that succeeded changed."""
    done = {r.action_id for r in results if r.state == "succeeded" and not r.rollback}
    out = {change_id(str(a.target), c["path"]) for a in actions
           if a.type == "update" and a.id in done for c in a.params.get("changes", ())}
    return tuple(sorted(out))


def flapping(history: Sequence[Sequence[str]], cycles: int) -> frozenset[str]:
    """Fields changed in each of the newest ``cycles`` cycles (``history`` is newest first)."""
    if cycles <= 0 or len(history) < cycles:
        return frozenset()
    recent = [set(h) for h in history[:cycles]]
    return frozenset(set.intersection(*recent))
