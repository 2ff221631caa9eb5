"""A waiting batch's trigger opens the target (config + store engine) once per wait and disposes
the engine however the wait ends."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from reconciler_airflow.triggers import WaveReadyTrigger


class CountingTrigger(WaveReadyTrigger):
    """The real trigger; only opening the target is replaced, by a step whose store records
    whether it was closed and whose wave answers the given statuses in turn."""

    def __init__(self, statuses: list[str], **kwargs: Any) -> None:
        super().__init__("shop", "cid-1", "plan.json", 1, poll_s=0.001, **kwargs)
        self.statuses, self.opened, self.closed, self.polls = statuses, 0, 0, 0

    def _open(self) -> Any:
        self.opened += 1
        store = SimpleNamespace(close=self._close)
        return SimpleNamespace(target=SimpleNamespace(store=store), wave_status=self._status)

    def _close(self) -> None:
        self.closed += 1

    def _status(self, plan_ref: str, wave: int) -> str:
        self.polls += 1
        return self.statuses[min(self.polls, len(self.statuses)) - 1]


async def _events(trigger: WaveReadyTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def test_polls_reuse_one_opened_target_and_dispose_it_when_ready() -> None:
    trigger = CountingTrigger(["wait"] * 5 + ["ready"], timeout_s=10)
    assert asyncio.run(_events(trigger)) == [{"status": "ready"}]
    assert (trigger.polls, trigger.opened, trigger.closed) == (6, 1, 1)


def test_a_timed_out_wait_disposes_the_store_too() -> None:
    trigger = CountingTrigger(["wait"], timeout_s=0.004)
    assert asyncio.run(_events(trigger)) == [{"status": "timeout"}]
    assert (trigger.polls, trigger.opened, trigger.closed) == (4, 1, 1)


def test_a_cancelled_wait_disposes_the_store() -> None:
    trigger = CountingTrigger(["wait"], timeout_s=3600)
    trigger.poll_s = 0.01

    async def cancel_soon() -> None:
        task = asyncio.ensure_future(_events(trigger))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_soon())
    assert trigger.opened == 1 and trigger.closed == 1 and trigger.polls >= 2
