"""The Airflow task graph's names and the values its tasks hand on, defined once.

Task ids and XCom keys live here so the DAG factory, the task callables, the notifiers and the
tests cannot drift apart. Every value that crosses from one task to the next is a frozen model:
a task returns ``model.model_dump(mode="json")`` (XCom holds JSON) and the task that reads it
validates it back with ``Model.model_validate`` before doing anything else, so a malformed or
hand-edited XCom fails that task with a clear error and never reaches a provider call.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError, model_validator

from reconciler.core.cycle import Verified
from reconciler.core.fidelity import degraded
from reconciler.core.model import CycleStatus, Drift, Fidelity, Frozen, Risk

if TYPE_CHECKING:
    from reconciler.core.gate import GateVerdict
    from reconciler.core.model import Diff, Plan, Snapshot
    from reconciler.core.policy import Policy

__all__ = [
    "SENSE", "VALIDATE", "COMPARE", "ROUTE", "REPORT", "PAGE", "ROLLBACK", "RECORD",
    "PLAN", "APPROVE", "ACTUATE", "VERIFY", "SUMMARY_KEY", "DECISION_KEY",
    "pass_group", "plan_task", "approve_task", "actuate_task", "verify_task",
    "XComJson", "MalformedXCom", "from_xcom",
    "KindSeen", "Sensed", "Validated", "DiffCounts", "Compared", "PlanSummary", "Batch",
    "Planned", "Preview", "BatchResult", "RolledBack", "Verification", "PassDecision",
    "ApprovalDecision",
]

# -- task ids -------------------------------------------------------------------------------

SENSE, VALIDATE, COMPARE, ROUTE = "sense", "validate", "compare", "route"
REPORT, PAGE, ROLLBACK, RECORD = "report", "page", "rollback", "record"
# the tasks of one pass, inside its task group (their full ids: the functions below)
PLAN, APPROVE, ACTUATE, VERIFY = "plan", "approve", "actuate", "verify"

# -- XCom keys besides the return value -----------------------------------------------------

SUMMARY_KEY = "summary"  # plan: the pass's PlanSummary
DECISION_KEY = "decision"  # route: its Route; plan: its PassDecision; approve: ApprovalDecision


def pass_group(pass_no: int) -> str:
    return f"pass_{pass_no}"


def plan_task(pass_no: int) -> str:
    return f"{pass_group(pass_no)}.{PLAN}"


def approve_task(pass_no: int) -> str:
    return f"{pass_group(pass_no)}.{APPROVE}"


def actuate_task(pass_no: int) -> str:
    return f"{pass_group(pass_no)}.{ACTUATE}"


def verify_task(pass_no: int) -> str:
    return f"{pass_group(pass_no)}.{VERIFY}"


# -- the boundary ---------------------------------------------------------------------------

XComJson = dict[str, Any]  # what XCom holds: a model's JSON dump, nothing else
M = TypeVar("M", bound=BaseModel)


class MalformedXCom(ValueError):
    """An XCom that is not the value its task hands on (hand-edited, or from another version):
    no retry fixes it, and nothing may act on it."""


def from_xcom(model: type[M], value: Mapping[str, Any] | None, what: str) -> M:
    """``value`` (an XCom) validated back into ``model``, or :class:`MalformedXCom` naming it."""
    if value is None:
        raise MalformedXCom(f"{what}: no XCom (did its task run?)")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise MalformedXCom(f"{what} is not a valid {model.__name__}: {exc}") from exc


# -- the values -----------------------------------------------------------------------------


class KindSeen(Frozen):
    completeness: float
    errors: tuple[str, ...] = ()


class Sensed(Frozen):
    """What ``sense`` saw: the snapshot is an artifact (``ref``); this is its summary."""

    ref: str
    completeness: float
    fidelity: Fidelity
    count: int
    latency_s: float
    in_flight: int
    kinds: dict[str, KindSeen]
    complete_enough: bool
    poke_factor: float  # the sensors poke this much less often while the provider is under load
    incomplete: bool = False  # went on at the sense deadline with what was seen

    @classmethod
    def of(cls, snap: Snapshot, ref: str, policy: Policy) -> Sensed:
        return cls(ref=ref, completeness=snap.completeness, fidelity=snap.fidelity,
                   count=len(snap.resources), latency_s=snap.latency_s,
                   in_flight=len(snap.in_flight),
                   kinds={k: KindSeen(completeness=s.completeness, errors=tuple(s.errors[:3]))
                          for k, s in snap.kinds.items()},
                   complete_enough=snap.completeness >= policy.completeness_threshold,
                   poke_factor=degraded(snap, policy).poke_factor)


class Validated(Frozen):
    """The quality gate's verdict on the snapshot and the desired state validate kept."""

    passed: bool
    failures: tuple[str, ...] = ()
    suite: str
    desired_version: str
    resources: int

    @classmethod
    def of(cls, verdict: GateVerdict, desired_version: str, resources: int) -> Validated:
        return cls(passed=verdict.passed, failures=verdict.failures, suite=verdict.suite,
                   desired_version=desired_version, resources=resources)


class DiffCounts(Frozen):
    add: int
    modify: int
    delete: int
    conflicts: int
    in_flight: int

    @property
    def to_act_on(self) -> int:
        """Everything but conflicts: what a pass could still change or wait for."""
        return self.add + self.modify + self.delete + self.in_flight


class Compared(Frozen):
    """A compare's drift; the diff itself is an artifact (``diff_ref``)."""

    drift: Drift
    diff_ref: str
    desired_version: str
    suppressed: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    counts: DiffCounts

    @classmethod
    def of(cls, diff: Diff, drift: Drift, ref: str, desired_version: str) -> Compared:
        return cls(drift=drift, diff_ref=ref, desired_version=desired_version,
                   suppressed=tuple(diff.suppressed),
                   conflicts=tuple(sorted(str(c) for c in diff.conflicts)),
                   counts=DiffCounts(add=len(diff.additions), modify=len(diff.modifications),
                                     delete=len(diff.deletions), conflicts=len(diff.conflicts),
                                     in_flight=len(diff.in_flight)))


class PlanSummary(Frozen):
    """One pass's plan (an artifact, ``plan_ref``) and the mandate its batches run under."""

    plan_ref: str
    hash: str
    needs_approval: bool
    approval_reasons: tuple[str, ...] = ()
    counts: dict[str, int]
    max_risk: Risk
    waves: int
    fence: int | None
    deadline_at: datetime
    stop: bool  # the plan ends the cycle before acting (core.cycle.plan_stop)

    @classmethod
    def of(cls, plan: Plan, ref: str, *, fence: int | None, deadline_at: datetime,
           stop: bool) -> PlanSummary:
        return cls(plan_ref=ref, hash=plan.hash, needs_approval=plan.validation.needs_approval,
                   approval_reasons=plan.validation.approval_reasons, counts=plan.audit.counts,
                   max_risk=plan.audit.max_risk, waves=len(plan.waves), fence=fence,
                   deadline_at=deadline_at, stop=stop)


class Batch(Frozen):
    """A slice ``[start, end)`` of one wave of the plan artifact, and the mandate the actuation
    guard checks (the lease's fence, the plan's hash, the cycle's deadline)."""

    plan_ref: str
    hash: str
    wave: int
    batch: int
    start: int
    end: int
    label: str
    fence: int | None = None
    deadline_at: datetime | None = None

    @model_validator(mode="after")
    def _a_slice(self) -> Batch:
        if not 0 <= self.start < self.end or self.wave < 0:
            raise ValueError(f"not a slice of a wave: wave {self.wave} [{self.start}, {self.end})")
        return self


class Planned(Frozen):
    """What ``Step.plan`` returns: the summary for XCom and the batches to map over."""

    summary: PlanSummary
    batches: tuple[Batch, ...] = ()


class Preview(Frozen):
    """A plan for reading only (``report``): no lease, no actions."""

    plan_ref: str
    hash: str
    counts: dict[str, int]
    needs_approval: bool
    errors: tuple[str, ...] = ()


class BatchResult(Frozen):
    succeeded: int
    failed: int
    skipped: int


class RolledBack(Frozen):
    """What the rollback undid: the failed wave, the point it went back to."""

    rolled_back: int = 0
    failed: int = 0
    wave: int | None = None
    point: int | None = None


class Verification(Frozen):
    """One verify poke's judgement of pass ``pass_no``: ``check`` (core.cycle's, what the
    cycle's state keeps) and what the sensor needs to poke on."""

    pass_no: int
    check: Verified
    within_since: float | None = None  # within tolerance since (settled after settle_seconds)
    poke_factor: float = 1.0


class PassDecision(Frozen):
    """Whether pass N (>= 2) runs: only while drift falls and the bounds allow."""

    proceed: bool
    status: CycleStatus | None = None
    reason: str = ""


class ApprovalDecision(Frozen):
    """What the human answered to a pass's approval request, and what became of it."""

    approved: bool
    timed_out: bool = False
    by: str | None = None
    refused: bool = False  # answered by someone who is not an approver of the target
    stale: tuple[str, ...] = ()  # preconditions a fresh observation no longer meets

    @property
    def actor(self) -> str:
        return f"airflow:{self.by or 'unknown'}"
