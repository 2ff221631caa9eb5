"""A batch XCom edited by hand (or left by another version) fails its ``actuate`` task at once,
unretried, before anything reaches the provider; the batch as planned still runs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.dags import support


class HeldStep:
    """``ActuateOperator`` over a given pipeline step (the DAG's own opens one per run)."""

    def __init__(self, step: Any) -> None:
        self.step = step

    def operator(self, batch: dict[str, Any]) -> Any:
        from reconciler_airflow.operators import ActuateOperator

        step = self.step

        class Held(ActuateOperator):
            def _step(self) -> Any:
                return step

        return Held(task_id="actuate", target=step.name, batch=batch)


EDITS = [
    {"actions": [{"id": "delete:sim.Node/node-a1"}]},  # a field no batch has
    {"end": "all"},
    {"start": 1, "end": 0},
    {"plan_ref": None},
]


def test_a_hand_edited_batch_fails_actuate_before_any_provider_call():
    from airflow.sdk.exceptions import AirflowFailException

    sim = support.seed("sim")
    sim.delete("sim.Node", "node-a2")
    step = support.step("sim", "xcom")
    planned = step.plan(step.sense("sense").ref, 1)
    batch = planned.batches[0].model_dump(mode="json")  # what the plan task's XCom holds
    held = HeldStep(step)
    try:
        for edit in EDITS:
            with pytest.raises(AirflowFailException, match="is not a valid Batch"):
                held.operator({**batch, **edit}).execute({})
        assert sim.get("sim.Node", "node-a2") is None
        assert step.target.store.audit_rows(target="sim", kind="action",
                                            correlation_id=step.correlation_id) == []
        assert held.operator(batch).execute({}) == {"succeeded": 1, "failed": 0, "skipped": 0}
        assert sim.get("sim.Node", "node-a2") is not None
    finally:
        step.target.store.release_lease(step.name, step.correlation_id)
