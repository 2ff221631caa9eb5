"""convergence and breaker: tolerance, progress, bounds, windows; breaker state machine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reconciler.core import breaker as brk
from reconciler.core.convergence import (
    count_cycle,
    in_window,
    judge_pass,
    made_progress,
    within_tolerance,
)
from reconciler.core.model import Drift, Outcome
from reconciler.core.policy import Policy, Tolerance, Window
from reconciler.testing import MemoryStore

NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)  # a Monday


def drift(magnitude, drifted=1, total=10, urgency="high"):
    return Drift(magnitude=magnitude, drifted=drifted, total=total, fraction=drifted / total,
                 urgency=urgency)


def test_zero_drift_is_within_any_tolerance():
    assert within_tolerance(Drift(), Tolerance())


def test_tolerated_fraction_but_never_critical():
    tol = Tolerance(drift_fraction=0.2)
    assert within_tolerance(drift(3, drifted=1), tol)
    assert not within_tolerance(drift(10, drifted=1, urgency="critical"), tol)
    assert not within_tolerance(drift(9, drifted=3), tol)


def test_progress_must_be_strictly_monotonic():
    assert made_progress(drift(5), drift(3))
    assert not made_progress(drift(5), drift(5))


@pytest.mark.parametrize(
    ("history", "ok", "late", "iteration", "status"),
    [
        ([drift(5), Drift()], True, False, 1, "converged"),
        ([drift(5), drift(3)], False, False, 1, "failed"),
        ([drift(5), drift(5)], True, False, 1, "no_progress"),
        ([drift(5), drift(3)], True, True, 1, "deadline"),
        ([drift(5), drift(3)], True, False, 3, "max_iterations"),
        ([drift(5), drift(3)], True, False, 1, None),
    ],
)
def test_judge_pass(history, ok, late, iteration, status):
    verdict = judge_pass(history, policy=Policy(max_iterations=3), actuation_ok=ok,
                         past_deadline=late, iteration=iteration)
    assert verdict.status == status and verdict.done == (status is not None)


def test_windows():
    assert in_window(NOW, ())
    assert in_window(NOW, (Window(days=(0,), start_hour=9, end_hour=11),))
    assert not in_window(NOW, (Window(days=(5, 6)),))
    assert not in_window(NOW, (Window(start_hour=0, end_hour=9),))


def test_breaker_opens_after_k_failures_and_stays_open():
    state = brk.BreakerState(target="t")
    for _ in range(2):
        state = brk.after_cycle(state, True, 3, NOW)
        assert state.state == "closed"
    state = brk.after_cycle(state, True, 3, NOW, "boom")
    assert state.state == "open" and state.opened_at == NOW and state.reason == "boom"
    assert not brk.allows_actuation(state)
    assert brk.after_cycle(state, False, 3, NOW) == state  # only a manual reset moves it


def test_success_resets_the_failure_count():
    state = brk.after_cycle(brk.BreakerState(target="t"), True, 3, NOW)
    assert brk.after_cycle(state, False, 3, NOW).consecutive_failures == 0


def test_manual_reset_goes_half_open_and_one_failure_reopens():
    opened = brk.BreakerState(target="t", state="open", consecutive_failures=3, opened_at=NOW)
    trial = brk.reset(opened)
    assert trial.state == "half_open" and brk.allows_actuation(trial)
    assert brk.after_cycle(trial, True, 3, NOW).state == "open"
    assert brk.after_cycle(trial, False, 3, NOW).state == "closed"


def test_a_fraction_exactly_at_the_tolerance_is_within_it():
    assert within_tolerance(drift(3, drifted=2, total=10), Tolerance(drift_fraction=0.2))


def test_a_rising_drift_is_no_progress():
    assert not made_progress(drift(3), drift(5))


def test_judge_pass_compares_the_last_two_passes_of_a_longer_history():
    policy = Policy(max_iterations=5)
    falling_late = judge_pass([drift(9), drift(5), drift(3)], policy=policy, actuation_ok=True,
                              past_deadline=False, iteration=2)
    assert not falling_late.done
    rising_late = judge_pass([drift(1), drift(3), drift(5)], policy=policy, actuation_ok=True,
                             past_deadline=False, iteration=2)
    assert rising_late.status == "no_progress" and "3 -> 5" in rising_late.reason


def test_judge_pass_stops_past_the_iteration_bound_too():
    verdict = judge_pass([drift(5), drift(3)], policy=Policy(max_iterations=3), actuation_ok=True,
                         past_deadline=False, iteration=4)
    assert verdict.status == "max_iterations" and "4 passes" in verdict.reason


def test_judge_pass_takes_its_flags_by_name_only():
    """Two booleans side by side: a positional call could swap them unnoticed."""
    with pytest.raises(TypeError):
        judge_pass([drift(5), drift(3)], Policy(), True, False, 1)  # type: ignore[misc]


def test_a_window_includes_its_start_hour_and_excludes_its_end_hour():
    window = (Window(days=(0,), start_hour=10, end_hour=12),)
    assert in_window(NOW, window)  # 10:00 on a Monday
    assert not in_window(NOW.replace(hour=12), window)
    assert in_window(NOW.replace(hour=11), window)
    assert not in_window(NOW.replace(hour=9), window)


def outcome(status):
    return Outcome(target="t", correlation_id="c", status=status, converged=status == "converged",
                   started_at=NOW, finished_at=NOW, error=f"{status}!")


def test_count_cycle_says_true_only_for_the_cycle_that_opened_the_breaker():
    store = MemoryStore()
    opened = [count_cycle(store, outcome("failed"), 2, NOW) for _ in range(4)]
    assert opened == [False, True, False, False]
    assert store.load_breaker("t").state == "open" and store.load_breaker("t").reason == "failed!"


def test_count_cycle_resets_on_success_and_half_open_reopens_at_once():
    store = MemoryStore()
    assert not count_cycle(store, outcome("no_progress"), 2, NOW)
    assert not count_cycle(store, outcome("converged"), 2, NOW)
    assert not count_cycle(store, outcome("deadline"), 2, NOW)  # the count began again
    assert store.load_breaker("t").consecutive_failures == 1
    store.breakers["t"] = brk.reset(brk.BreakerState(target="t", state="open"))
    assert count_cycle(store, outcome("max_iterations"), 5, NOW)
