"""A plan's name: the hash of what it does, recomputable from a stored or passed-on plan."""

from __future__ import annotations

from reconciler.core.model import Plan, PlanValidation, Wave, content_hash

__all__ = ["plan_hash", "recompute_hash"]


def plan_hash(target: str, desired_version: str, waves: tuple[Wave, ...],
              validation: PlanValidation) -> str:
    """What a plan does, hashed: its actions and whether it needs approval. Duration
    estimates move with every cycle's timings, so they are left out: the plan ``reconcile
    plan`` shows and the one ``apply --approve HASH`` runs hash alike if nothing changed."""
    body = [[a.model_dump(mode="json", exclude=_UNHASHED) for a in w.actions] for w in waves]
    return content_hash([target, desired_version, body,
                         validation.model_dump(mode="json")], 32)


def recompute_hash(plan: Plan) -> str:
    """The hash of a plan's content, to check a stored or passed-on plan against its name."""
    return plan_hash(plan.target, plan.desired_version, plan.waves, plan.validation)


_UNHASHED: dict[str, bool | set[str]] = {"estimated_duration_s": True,
                                         "inverse": {"estimated_duration_s"}}
