"""Fidelity under load: which facts of a sense (throttles, retries, page latency) make its
snapshot degraded, and what a degraded snapshot changes in the cycle (core.model.Degradation).

Pure and decided here once: the planner blocks deletions and records the reduced parallelism
in the plan, the actuators of both drivers honour it, both drivers' sensors poke less often.
"""

from __future__ import annotations

from reconciler.core.model import Degradation, KindStatus, Observation, Plan, Snapshot
from reconciler.core.policy import FidelityPolicy, Policy

__all__ = ["strain", "degraded", "parallel_for", "poke_interval", "MAX_POKE_S"]

MAX_POKE_S = 600.0  # a slowed-down sensor still pokes at least this often


def strain(facts: Observation | KindStatus, limits: FidelityPolicy) -> tuple[str, ...]:
    """Why one kind's listing counts as observed under load (empty: it does not)."""
    out = []
    if facts.throttled >= limits.throttles:
        out.append(f"{facts.kind} throttled {facts.throttled}x (>= {limits.throttles})")
    if facts.retries >= limits.retries:
        out.append(f"{facts.kind} retried {facts.retries}x (>= {limits.retries})")
    if facts.page_latency_s > limits.page_latency_s:
        out.append(f"{facts.kind} pages took {facts.page_latency_s:.2f}s "
                   f"(> {limits.page_latency_s:g}s)")
    return tuple(out)


def degraded(snapshot: Snapshot, policy: Policy) -> Degradation:
    """What the cycle does differently because of how ``snapshot`` was observed: fewer actions
    at once, no deletions, sensors poking less often; nothing when no kind was under load."""
    limits = policy.fidelity
    reasons = tuple(r for kind in sorted(snapshot.kinds)
                    for r in strain(snapshot.kinds[kind], limits))
    if not reasons:
        return Degradation()
    return Degradation(reasons=reasons,
                       max_parallel=min(policy.max_parallel, limits.max_parallel),
                       allow_deletions=not limits.block_deletions,
                       poke_factor=limits.poke_factor)


def parallel_for(plan: Plan, policy: Policy) -> int:
    """How many actions of ``plan`` may run at once: the policy's, or fewer if degraded."""
    cap = plan.degradation.max_parallel
    return policy.max_parallel if cap is None else max(1, min(policy.max_parallel, cap))


def poke_interval(base_s: float, poke_factor: float) -> float:
    """A sensor's (or poll's) pause after a sense whose degradation has ``poke_factor``."""
    return min(MAX_POKE_S, max(base_s, base_s * poke_factor))
