"""The values Airflow tasks hand on (orchestration.taskgraph): each survives XCom's JSON
unchanged, and a value that is not one (an unknown field, a hand-edited slice) is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

from reconciler.core.cycle import Verified
from reconciler.core.model import Drift
from reconciler.orchestration import taskgraph as tg

AT = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
DRIFT = Drift(magnitude=2.5, fraction=0.2, urgency="high", by_urgency={"high": 2}, drifted=2,
              total=10)
BATCH = tg.Batch(plan_ref="file:///a/plan-1.json", hash="h" * 64, wave=1, batch=0, start=0,
                 end=3, label="wave 2 batch 1", fence=7, deadline_at=AT)
SUMMARY = tg.PlanSummary(plan_ref="file:///a/plan-1.json", hash="h" * 64, needs_approval=True,
                         approval_reasons=("3 deletions > 2",), counts={"delete": 3},
                         max_risk="high", waves=2, fence=7, deadline_at=AT, stop=False)
COMPARED = tg.Compared(drift=DRIFT, diff_ref="file:///a/diff.json", desired_version="v1",
                       suppressed=("sim.Node/a:spec.x",), conflicts=("sim.Node/b",),
                       counts=tg.DiffCounts(add=1, modify=1, delete=0, conflicts=1, in_flight=0))

VALUES: list[BaseModel] = [
    tg.Sensed(ref="file:///a/sense.json", completeness=0.5, fidelity="degraded", count=3,
              latency_s=0.25, in_flight=1,
              kinds={"sim.Node": tg.KindSeen(completeness=0.5, errors=("throttled",))},
              complete_enough=False, poke_factor=3.0, incomplete=True),
    tg.Validated(passed=False, failures=("ids unique",), suite="basic", desired_version="v1",
                 resources=4),
    COMPARED,
    SUMMARY,
    BATCH,
    tg.Planned(summary=SUMMARY, batches=(BATCH,)),
    tg.Preview(plan_ref="file:///a/preview.json", hash="p" * 64, counts={"create": 1},
               needs_approval=False, errors=("cycle",)),
    tg.BatchResult(succeeded=2, failed=1, skipped=0),
    tg.RolledBack(rolled_back=2, failed=0, wave=1, point=0),
    tg.Verification(pass_no=2, check=Verified(
        drift=DRIFT, within=True, settled=False, in_flight=1, conflicts_only=("sim.Node/b",),
        deadline=True, snapshot_ref="file:///a/verify-2.json"), within_since=1.5,
                    poke_factor=2.0),
    tg.PassDecision(proceed=False, status="no_progress", reason="drift did not fall"),
    tg.ApprovalDecision(approved=False, timed_out=False, by="mallory", refused=True,
                        stale=("sim.Node/a changed",)),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_each_value_survives_xcom_json_unchanged(value: BaseModel) -> None:
    carried = json.loads(json.dumps(value.model_dump(mode="json")))  # what XCom stores
    assert type(value).model_validate(carried) == value


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_each_value_refuses_a_field_it_does_not_have(value: BaseModel) -> None:
    edited = {**value.model_dump(mode="json"), "force": True}
    with pytest.raises(ValidationError, match="force"):
        type(value).model_validate(edited)


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_each_value_is_frozen(value: BaseModel) -> None:
    field = next(iter(type(value).model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(value, field, getattr(value, field))


@pytest.mark.parametrize("edit", [{"start": 3, "end": 3}, {"start": -1}, {"wave": -1},
                                  {"end": "all"}])
def test_a_batch_must_be_a_slice_of_a_wave(edit: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        tg.Batch.model_validate({**BATCH.model_dump(mode="json"), **edit})


def test_a_malformed_xcom_says_which_task_and_model() -> None:
    with pytest.raises(tg.MalformedXCom, match=r"pass_1.plan is not a valid PlanSummary"):
        tg.from_xcom(tg.PlanSummary, {"hash": "h"}, tg.plan_task(1))
    with pytest.raises(tg.MalformedXCom, match="compare: no XCom"):
        tg.from_xcom(tg.Compared, None, tg.COMPARE)
    assert tg.from_xcom(tg.Compared, COMPARED.model_dump(mode="json"), "compare") == COMPARED


def test_task_ids_name_the_task_groups_tasks() -> None:
    assert [tg.plan_task(2), tg.approve_task(1), tg.actuate_task(3), tg.verify_task(1)] == [
        "pass_2.plan", "pass_1.approve", "pass_3.actuate", "pass_1.verify"]
