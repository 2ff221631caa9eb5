"""Plan execution: bounded concurrency, retries with backoff and jitter, rollback, events."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from reconciler.core.errors import PermanentError, TemporaryError
from reconciler.core.fidelity import parallel_for
from reconciler.core.guard import ActuationGuard, Refused
from reconciler.core.inflight import claim_create
from reconciler.core.model import (
    Action,
    ActionResult,
    ActuationResult,
    Event,
    EventType,
    OperationResult,
    Plan,
    Wave,
)
from reconciler.core.policy import Policy
from reconciler.core.ports import Applier, Clock, CreateLedger, EventSink, ResultLog
from reconciler.core.rollback import restore_point, to_undo

__all__ = ["Actuator", "backoff_delay"]


def backoff_delay(attempt: int, policy: Policy, rng: random.Random, hint: float | None) -> float:
    """Exponential backoff capped at ``backoff_cap_s``; jitter shaves off up to ``jitter`` of it."""
    delay: float = min(policy.backoff_cap_s, policy.backoff_base_s * 2.0 ** (attempt - 1))
    if hint is not None:
        delay = min(policy.backoff_cap_s, max(delay, hint))
    return round(delay * (1.0 - policy.jitter * rng.random()), 6) if policy.jitter else delay


@dataclass
class Actuator:
    """Runs a plan wave by wave; one instance per plan execution (it keeps the progress)."""

    applier: Applier
    policy: Policy
    events: EventSink
    clock: Clock
    target: str
    correlation_id: str
    rng: random.Random = field(default_factory=random.Random)
    deadline: float | None = None  # on the clock's monotonic scale
    ledger: CreateLedger | None = None  # creates in flight: one client token per attempt
    guard: ActuationGuard | None = None  # checked before every provider call (core.guard)
    # each result is written as its action ends, so a crash mid-batch hides nothing from rollback
    results_log: ResultLog | None = None
    _done: int = 0
    _total: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _completion: list[str] = field(default_factory=list)  # succeeded ids, in completion order
    _parallel: int = 1

    def run(self, plan: Plan) -> ActuationResult:
        self._total = len(plan.actions)
        self._parallel = parallel_for(plan, self.policy)  # fewer at once when degraded
        self._completion = []
        results: dict[str, ActionResult] = {}
        rollback: list[ActionResult] = []
        error: str | None = None
        for wave in plan.waves:
            if error is not None and self.policy.on_failure == "rollback":
                results.update(self._skip(wave.actions, "an earlier wave failed"))
                continue
            wave_results = self._run_wave(wave, results)
            results.update(wave_results)
            failed = [r for r in wave_results.values() if r.state == "failed"]
            if failed and error is None:
                error = f"{failed[0].action_id}: {failed[0].error}"
            if failed and self.policy.on_failure == "rollback":
                rollback = self._rollback(plan, wave, error or "")
        ordered = tuple(results[a.id] for a in plan.actions)
        return ActuationResult(results=ordered, rollback=tuple(rollback), error=error)

    def _run_wave(self, wave: Wave, prior: dict[str, ActionResult]) -> dict[str, ActionResult]:
        blocked = {r.action_id for r in prior.values() if r.state in ("failed", "skipped")}
        runnable = [a for a in wave.actions if not blocked.intersection(a.depends_on)]
        out = self._skip([a for a in wave.actions if a not in runnable], "a dependency failed")
        workers = max(1, min(self._parallel, len(runnable)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(self._run_action, runnable):
                out[result.action_id] = result
        return out

    def _run_action(self, action: Action) -> ActionResult:
        started, t0 = self.clock.now(), self.clock.monotonic()
        if self._past_deadline():
            return self._finish(action, "skipped", 0, "cycle deadline reached", started, t0)
        self._emit("action_started", action, {"type": action.type, "key": str(action.target)})
        attempts, last_error = 0, ""
        while attempts < self.policy.max_attempts:
            attempts += 1
            try:
                outcome, token = self._apply(action)
            except TemporaryError as exc:
                last_error = f"temporary: {exc}"
                if attempts >= self.policy.max_attempts or self._past_deadline():
                    break
                self.clock.sleep(backoff_delay(attempts, self.policy, self.rng, exc.delay))
                continue
            except Refused as exc:
                last_error = str(exc)
                break
            except PermanentError as exc:
                last_error = f"permanent: {exc}"
                break
            except Exception as exc:  # an adapter bug must fail one action, not the cycle
                last_error = f"unexpected {type(exc).__name__}: {exc}"
                break
            with self._lock:
                self._completion.append(action.id)
            return self._finish(action, "succeeded", attempts, None, started, t0, outcome, token)
        return self._finish(action, "failed", attempts, last_error, started, t0)

    def _apply(self, action: Action) -> tuple[OperationResult, str]:
        """The provider call, if the guard allows it, and the client token it carried; a create
        goes out with its attempt's token (core.inflight)."""
        if self.guard is not None:
            self.guard.check(action)
        if self.ledger is None:
            return self.applier.apply(action), action.idempotency_token
        if action.type == "create":
            sent = claim_create(self.ledger, self.target, action,
                                correlation_id=self.correlation_id, now=self.clock.now(),
                                rng=self.rng)
            try:
                return self.applier.apply(sent), sent.idempotency_token
            except PermanentError:
                # refused for good: that attempt made nothing, the next one gets a new token
                self.ledger.end_creates(self.target, [action.target])
                raise
        outcome = self.applier.apply(action)
        if action.type == "delete":  # a create of it that was never listed is over, too
            self.ledger.end_creates(self.target, [action.target])
        return outcome, action.idempotency_token

    def _finish(
        self,
        action: Action,
        state: str,
        attempts: int,
        error: str | None,
        started: datetime,
        t0: float,
        outcome: str | None = None,
        token: str | None = None,
    ) -> ActionResult:
        with self._lock:
            self._done += 1
            done = self._done
        result = ActionResult.model_validate({
            "action_id": action.id, "key": action.target, "type": action.type, "state": state,
            "outcome": outcome, "attempts": attempts, "error": error, "started_at": started,
            "finished_at": self.clock.now(), "duration_s": round(self.clock.monotonic() - t0, 6),
            "wave": action.wave, "rollback": action.id.endswith("#undo"), "token": token,
        })
        self._log([result])
        kind: EventType = "action_completed" if state == "succeeded" else "action_failed"
        if state != "skipped":
            detail = {"state": state, "attempts": attempts, "error": error, "outcome": outcome,
                      "done": done, "total": self._total}
            self._emit(kind, action, detail)
        return result

    def _skip(self, actions: Sequence[Action], reason: str) -> dict[str, ActionResult]:
        now = self.clock.now()
        out = {}
        for a in actions:
            with self._lock:
                self._done += 1
            out[a.id] = ActionResult(
                action_id=a.id, key=a.target, type=a.type, state="skipped", error=reason,
                started_at=None, finished_at=now, wave=a.wave,
            )
        self._log(list(out.values()))
        return out

    def _rollback(self, plan: Plan, wave: Wave, error: str) -> list[ActionResult]:
        """Back to the latest rollback point the plan names at or before the failed wave."""
        point = restore_point(plan, wave.index)
        order = {aid: n for n, aid in enumerate(self._completion)}
        return self.rollback_actions(wave.index, to_undo(plan, point, wave.index, order), error,
                                     point=point)

    def rollback_actions(
        self, wave: int, newest_first: Sequence[Action], error: str, *, point: int | None = None
    ) -> list[ActionResult]:
        """Undo completed reversible actions back to rollback point ``point`` (the fleet before
        that wave; default: the failed wave's own), newest first; keep the original error.

        Also used across processes, when a wave's batches ran as separate tasks.
        """
        point = wave if point is None else point
        undo = [a.inverse.model_copy(update={"wave": a.wave})
                for a in newest_first if a.reversible and a.inverse is not None]
        self._emit_cycle("rollback_initiated", {
            "wave": wave, "point": point, "waves": list(range(point, wave + 1)),
            "actions": len(undo), "error": error})
        out = []
        for inverse in undo:
            self._total += 1
            out.append(self._run_action(inverse))
        return out

    def _log(self, results: list[ActionResult]) -> None:
        if self.results_log is not None and results:
            self.results_log.record_results(self.target, self.correlation_id, results)

    def _past_deadline(self) -> bool:
        return self.deadline is not None and self.clock.monotonic() >= self.deadline

    def _emit(self, kind: EventType, action: Action, detail: dict[str, object]) -> None:
        self.events.emit(Event(type=kind, target=self.target, correlation_id=self.correlation_id,
                               at=self.clock.now(), action_id=action.id, detail=detail))

    def _emit_cycle(self, kind: EventType, detail: dict[str, object]) -> None:
        self.events.emit(Event(type=kind, target=self.target, correlation_id=self.correlation_id,
                               at=self.clock.now(), detail=detail))

