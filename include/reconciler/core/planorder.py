"""A plan's order: which action waits for which (declared ``depends_on``, kind parents first,
deletions after every apply and children first), grouped into waves."""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.core.graph import VIRTUAL_PREFIX
from reconciler.core.kinds import DEFAULT_RULES, KindRegistry
from reconciler.core.model import Action, ActionType, Diff, ResourceKey, Wave

__all__ = ["action_id", "dependencies", "waves_of"]


def action_id(kind: ActionType, key: ResourceKey) -> str:
    return f"{kind}:{key.kind}/{key.name}"


def dependencies(
    applies: Mapping[str, Action],
    deletes: Mapping[str, Action],
    diff: Diff,
    rules: KindRegistry,
) -> dict[str, list[str]]:
    """Edges node -> prerequisites. Kind barriers use one virtual node per kind (O(n) edges)."""
    deps: dict[str, list[str]] = {a: [] for a in [*applies, *deletes]}
    declared = {d.key: d.depends_on for d in diff.additions}
    declared.update({m.key: m.desired.depends_on for m in diff.modifications})
    for aid, act in applies.items():
        for dep in declared.get(act.target, ()):
            for prereq in (action_id("create", dep), action_id("update", dep)):
                if prereq in applies:
                    deps[aid].append(prereq)
    kinds = {a.target.kind for a in [*applies.values(), *deletes.values()]}
    for kind in kinds:
        parents = (rules.get(kind) or DEFAULT_RULES(kind)).parents
        deps[f"@applied:{kind}"] = [a for a, x in applies.items() if x.target.kind == kind]
        deps[f"@deleted:{kind}"] = [a for a, x in deletes.items() if x.target.kind == kind]
        deps[f"@applied:{kind}"] += [f"@applied:{p}" for p in parents if p in kinds]
        for aid, act in applies.items():
            if act.target.kind == kind:
                deps[aid] += [f"@applied:{p}" for p in parents if p in kinds]
    for aid, act in deletes.items():
        # every deletion waits for all creates/updates, and children are deleted first
        deps[aid] += [f"@applied:{k}" for k in kinds]
        deps[aid] += [f"@deleted:{child}" for child in kinds
                      if act.target.kind in (rules.get(child) or DEFAULT_RULES(child)).parents]
    return deps


def waves_of(
    actions: Mapping[str, Action], levels: Mapping[str, int], deps: Mapping[str, list[str]]
) -> tuple[Wave, ...]:
    """Group by level; ``depends_on`` keeps the real (declared) prerequisites, not kind barriers."""
    by_level: dict[int, list[str]] = {}
    for aid in actions:
        if aid in levels:
            by_level.setdefault(levels[aid], []).append(aid)
    waves = []
    for index, level in enumerate(sorted(by_level)):
        ids = sorted(by_level[level])
        waves.append(Wave(
            index=index,
            actions=tuple(
                actions[a].model_copy(update={"wave": index, "depends_on": _real(deps[a])})
                for a in ids
            ),
        ))
    return tuple(waves)


def _real(prereqs: list[str]) -> tuple[str, ...]:
    return tuple(sorted({p for p in prereqs if not p.startswith(VIRTUAL_PREFIX)}))
