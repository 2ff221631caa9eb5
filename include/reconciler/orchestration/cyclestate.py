"""Where an orchestrated cycle's state lives between its tasks: the store, keyed by target and
correlation id; a dry run's in its own artifacts, since it records nothing that outlives it
(core.cycle). Each task loads it, and saves what it learnt."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from reconciler.core.cycle import CycleState, Stop

if TYPE_CHECKING:
    from reconciler.orchestration.runtime import Target
    from reconciler.output.artifacts import ArtifactStore

__all__ = ["CycleStateSteps"]


class CycleStateSteps:
    """The part of ``pipeline.Step`` that keeps the cycle's state (mixed into it)."""

    target: Target
    correlation_id: str

    if TYPE_CHECKING:
        @property
        def name(self) -> str: ...
        @property
        def policy(self) -> Any: ...
        @property
        def artifacts(self) -> ArtifactStore: ...

    def begin(self, *, started_at: datetime, dry_run: bool = False,
              only_kinds: list[str] | None = None, trigger: str = "manual",
              interval_start: datetime | None = None, actor: str = "airflow") -> CycleState:
        """The cycle's state, created by its first step (a re-poke or retry finds it)."""
        found = self.state(dry_run)
        if found:
            return found
        only = self.target.scope(only_kinds)  # an unknown kind fails the run's first task
        state = CycleState(
            target=self.name, correlation_id=self.correlation_id, started_at=started_at,
            deadline_at=started_at + timedelta(seconds=self.policy.cycle_deadline_seconds),
            dry_run=dry_run, actor=actor, trigger=trigger, interval_start=interval_start,
            only_kinds=only)
        self.save(state)
        return state

    def state(self, dry_run: bool | None = None) -> CycleState | None:
        """This cycle's state: in the store; a dry run's in its artifacts (it records nothing
        that outlives it, core.cycle)."""
        if dry_run is not True:
            found = self.target.store.load_cycle_state(self.name, self.correlation_id)
            if found or dry_run is False:
                return found
        try:
            return CycleState.model_validate(self.artifacts.get(self._state_ref()))
        except Exception:  # no state kept (a missing file or S3 key)
            return None

    def must_state(self) -> CycleState:
        state = self.state()
        if state is None:
            raise RuntimeError(f"no state for cycle {self.correlation_id}: sense begins it")
        return state

    def save(self, state: CycleState) -> CycleState:
        if state.dry_run:
            self.artifacts.put(f"{self.correlation_id}/state.json", state.model_dump(mode="json"))
        else:
            self.target.store.save_cycle_state(state)
        return state

    def update(self, **changes: Any) -> CycleState:
        return self.save(self.must_state().model_copy(update=changes))

    def _state_ref(self) -> str:
        return self.artifacts.ref(f"{self.correlation_id}/state.json")

    def halt(self, stop: Stop) -> None:
        """Why this cycle stops early (busy, a rejected plan, nothing to do), for ``record``:
        a task that fails leaves no XCom, and the outcome must say what happened, not guess."""
        self.update(halt=stop)
