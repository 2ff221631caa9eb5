"""A trigger that waits (in the triggerer, holding no worker or pool slot) for a wave's turn."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from reconciler.orchestration.pipeline import Step

__all__ = ["WaveReadyTrigger"]


class WaveReadyTrigger(BaseTrigger):
    """Fires ``ready`` when every earlier wave of the plan succeeded, ``abort`` when the pass is
    rolling back. JSON-safe arguments only; polls the state store, never the cloud."""

    def __init__(self, target: str, correlation_id: str, plan_ref: str, wave: int,
                 timeout_s: float, poll_s: float = 2.0) -> None:
        super().__init__()
        self.target, self.correlation_id = target, correlation_id
        self.plan_ref, self.wave = plan_ref, wave
        self.timeout_s, self.poll_s = timeout_s, poll_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("reconciler_airflow.triggers.WaveReadyTrigger", {
            "target": self.target, "correlation_id": self.correlation_id,
            "plan_ref": self.plan_ref, "wave": self.wave, "timeout_s": self.timeout_s,
            "poll_s": self.poll_s})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # One config parse and one store engine per wait, disposed however it ends (fired,
        # timed out, or cancelled when the triggerer drops the trigger): polling must not
        # build an engine every few seconds and leak its pool.
        step = await asyncio.to_thread(self._open)
        try:
            for _ in range(max(1, math.ceil(self.timeout_s / self.poll_s))):
                status = await asyncio.to_thread(step.wave_status, self.plan_ref, self.wave)
                if status != "wait":
                    yield TriggerEvent({"status": str(status)})
                    return
                await asyncio.sleep(self.poll_s)
            yield TriggerEvent({"status": "timeout"})
        finally:
            step.target.store.close()

    def _open(self) -> Step:
        from reconciler.orchestration.pipeline import Step

        return Step.open(self.target, self.correlation_id)
