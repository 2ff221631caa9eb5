"""sense: completeness, fidelity, stale fallback, deadline and correlation id."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta

import pytest

from reconciler.core.errors import TemporaryError
from reconciler.core.model import Observation
from reconciler.core.sense import ListingCount, SenseOptions, remembered_counts, sense
from reconciler.testing import FakeClock
from tests.builders import have, node


class ScriptedObserver:
    def __init__(self, answers, hang=()):
        self.answers = answers
        self.hang = set(hang)
        self.release = threading.Event()

    def observe(self, kind, timeout_s):
        if kind in self.hang:
            self.release.wait(5)
        answer = self.answers[kind]
        if isinstance(answer, Exception):
            raise answer
        return answer


def obs(kind, *names, completeness=1.0, throttled=0, errors=()):
    return Observation(kind=kind, resources=tuple(have(f"{kind}/{n}", node()) for n in names),
                       completeness=completeness, throttled=throttled, errors=errors)


def take(observer, clock=None, previous=None, deadline=5.0):
    return sense(observer, ["sim.Node", "sim.Workload"], target="t", correlation_id="c-9",
                 clock=clock or FakeClock(), options=SenseOptions(deadline_s=deadline),
                 previous=previous)


def test_full_snapshot_has_timestamp_scope_and_correlation_id():
    clock = FakeClock()
    snap = take(ScriptedObserver({"sim.Node": obs("sim.Node", "a", "b"),
                                  "sim.Workload": obs("sim.Workload")}), clock)
    assert snap.correlation_id == "c-9" and snap.captured_at == clock.now()
    assert set(snap.kinds) == {"sim.Node", "sim.Workload"}
    assert snap.fidelity == "full" and snap.completeness == 1.0 and len(snap.resources) == 2


def test_a_failing_kind_is_incomplete_with_its_error_recorded():
    snap = take(ScriptedObserver({"sim.Node": TemporaryError("503"),
                                  "sim.Workload": obs("sim.Workload", "w")}))
    status = snap.kinds["sim.Node"]
    assert status.completeness == 0.0 and "503" in status.errors[0]
    assert not snap.is_complete("sim.Node") and snap.is_complete("sim.Workload")


def test_partial_listing_and_throttling_degrade_fidelity():
    snap = take(ScriptedObserver({
        "sim.Node": obs("sim.Node", "a", completeness=0.5, errors=("page 2 failed",)),
        "sim.Workload": obs("sim.Workload", throttled=2)}))
    assert snap.kinds["sim.Node"].fidelity == "degraded"
    assert snap.kinds["sim.Workload"].fidelity == "degraded"
    assert snap.kinds["sim.Workload"].completeness == 1.0


def test_latency_is_bounded_by_the_deadline():
    observer = ScriptedObserver({"sim.Node": obs("sim.Node"), "sim.Workload": obs("sim.Workload")},
                                hang={"sim.Node"})
    try:
        snap = take(observer, deadline=0.2)
    finally:
        observer.release.set()
    assert snap.kinds["sim.Node"].completeness == 0.0
    assert "no answer within 0.2s" in snap.kinds["sim.Node"].errors[0]
    assert snap.kinds["sim.Workload"].complete


def test_stale_fallback_uses_the_last_good_observation_but_stays_incomplete():
    clock = FakeClock()
    good = take(ScriptedObserver({"sim.Node": obs("sim.Node", "a"),
                                  "sim.Workload": obs("sim.Workload")}), clock)
    clock.advance(30)
    snap = take(ScriptedObserver({"sim.Node": TemporaryError("down"),
                                  "sim.Workload": obs("sim.Workload")}), clock, previous=good)
    status = snap.kinds["sim.Node"]
    assert status.fidelity == "stale" and status.stale_age_s == 30.0
    assert [r.key.name for r in snap.resources] == ["a"]
    assert not snap.is_complete("sim.Node") and snap.fidelity == "stale"


def test_too_old_observations_are_not_used():
    clock = FakeClock()
    good = take(ScriptedObserver({"sim.Node": obs("sim.Node", "a"),
                                  "sim.Workload": obs("sim.Workload")}), clock)
    clock.advance(timedelta(hours=1).total_seconds())
    snap = take(ScriptedObserver({"sim.Node": TemporaryError("down"),
                                  "sim.Workload": obs("sim.Workload")}), clock, previous=good)
    assert snap.kinds["sim.Node"].fidelity == "degraded" and not snap.resources


def test_snapshot_round_trips_through_json():
    snap = take(ScriptedObserver({"sim.Node": obs("sim.Node", "a"),
                                  "sim.Workload": obs("sim.Workload")}))
    again = type(snap).model_validate_json(snap.model_dump_json())
    assert again == snap


def take_after(listed_before, answers, doubt_from=3):
    options = SenseOptions(deadline_s=5.0, last_counts=listed_before, doubt_empty_from=doubt_from)
    return sense(ScriptedObserver(answers), ["sim.Node", "sim.Workload"], target="t",
                 correlation_id="c-9", clock=FakeClock(), options=options)


def test_an_empty_listing_where_the_last_cycle_listed_many_is_doubted():
    snap = take_after({"sim.Node": 5, "sim.Workload": 5},
                      {"sim.Node": obs("sim.Node"), "sim.Workload": obs("sim.Workload", "w")})
    status = snap.kinds["sim.Node"]
    assert status.doubted_empty and status.completeness == 0.0 and "listed 5" in status.errors[0]
    assert not snap.is_complete("sim.Node") and snap.is_complete("sim.Workload")
    assert remembered_counts(snap) == {"sim.Node": 0, "sim.Workload": 1}  # next time: believed


def test_an_empty_listing_is_believed_when_it_was_small_empty_unknown_or_doubt_is_off():
    answers = {"sim.Node": obs("sim.Node"), "sim.Workload": obs("sim.Workload")}
    for before, doubt_from in (({"sim.Node": 2}, 3), ({"sim.Node": 0}, 3), ({}, 3),
                               ({"sim.Node": 50}, 0)):
        snap = take_after(before, answers, doubt_from)
        assert snap.is_complete("sim.Node") and not snap.kinds["sim.Node"].doubted_empty


def test_a_failed_listing_leaves_the_remembered_count_as_it_was():
    snap = take_after({"sim.Node": 5}, {"sim.Node": TemporaryError("503"),
                                        "sim.Workload": obs("sim.Workload")})
    assert remembered_counts(snap) == {"sim.Workload": 0}


def test_a_listing_count_keeps_the_cycle_before_for_a_cycle_that_senses_again():
    count = ListingCount(5, "c1").saved("c1", 6)
    assert count.seen_by("c2") == 6 and count.seen_by("c1") is None
    count = count.saved("c2", 0)
    assert count.seen_by("c2") == 6 and count.seen_by("c3") == 0
    assert count.saved("c2", 1).seen_by("c2") == 6


def test_the_default_bounds():
    assert SenseOptions() == SenseOptions(deadline_s=60.0, slow_fraction=0.5, max_stale_s=600.0,
                                          max_workers=4, last_counts={}, doubt_empty_from=3,
                                          pending={}, pending_ttl_s=600.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SenseOptions().deadline_s = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ListingCount(1, "c").count = 2  # type: ignore[misc]


def test_sense_takes_its_options_by_name_only():
    with pytest.raises(TypeError):
        sense(ScriptedObserver({}), [], "t", "c", FakeClock())  # type: ignore[misc]


def test_no_kinds_is_an_empty_snapshot():
    snap = sense(ScriptedObserver({}), [], target="t", correlation_id="c", clock=FakeClock())
    assert snap.kinds == {} and snap.resources == ()


class TimedObserver(ScriptedObserver):
    """Each listing takes ``took[kind]`` seconds on the fake clock."""

    def __init__(self, answers, clock, took):
        super().__init__(answers)
        self.clock, self.took = clock, took

    def observe(self, kind, timeout_s):
        self.clock.advance(self.took.get(kind, 0.0))
        return super().observe(kind, timeout_s)


def test_latency_is_measured_on_the_monotonic_clock_and_rounded_to_microseconds():
    clock = FakeClock()
    clock.advance(100.0)
    observer = TimedObserver({"sim.Node": obs("sim.Node"), "sim.Workload": obs("sim.Workload")},
                             clock, {"sim.Node": 0.1234567})
    snap = sense(observer, ["sim.Node"], target="t", correlation_id="c", clock=clock)
    assert snap.latency_s == 0.123457 and snap.kinds["sim.Node"].latency_s == 0.123457


def test_a_listing_slower_than_half_the_deadline_is_degraded():
    clock = FakeClock()
    answers = {"sim.Node": obs("sim.Node"), "sim.Workload": obs("sim.Workload")}
    slow = take(TimedObserver(answers, clock, {"sim.Node": 3.0, "sim.Workload": 2.5}), clock)
    assert slow.kinds["sim.Node"].fidelity == "degraded"
    assert slow.kinds["sim.Workload"].fidelity == "full"  # exactly half is not slow
    assert slow.kinds["sim.Node"].complete


def test_a_hung_kind_waited_from_the_sense_start():
    clock = FakeClock()
    clock.advance(100.0)
    observer = ScriptedObserver({"sim.Node": obs("sim.Node"), "sim.Workload": obs("sim.Workload")},
                                hang={"sim.Node"})
    try:
        snap = take(observer, clock, deadline=0.2)
    finally:
        observer.release.set()
    assert snap.kinds["sim.Node"].latency_s == 0.0  # the fake clock did not move


@pytest.mark.parametrize(("before", "doubt_from", "doubted"), [
    ({}, 1, False), ({"sim.Node": 1}, 1, True), ({"sim.Node": 3}, 3, True),
    ({"sim.Node": 5}, -1, False)])
def test_doubt_starts_at_the_threshold_and_a_threshold_below_one_turns_it_off(
        before, doubt_from, doubted):
    answers = {"sim.Node": obs("sim.Node"), "sim.Workload": obs("sim.Workload")}
    assert take_after(before, answers, doubt_from).kinds["sim.Node"].doubted_empty is doubted


def test_a_listing_count_compares_cycles_by_identity_not_order():
    count = ListingCount(5, "c2").saved("c1", 7)
    assert count == ListingCount(7, "c1", 5, "c2")
    assert count.seen_by("c1") == 5 and count.seen_by("c0") == 7


def first_and_failed(clock, first_answers, age):
    good = take(ScriptedObserver(first_answers), clock)
    clock.advance(age)
    return good


def test_a_complete_listing_is_used_even_with_a_previous_snapshot():
    clock = FakeClock()
    good = first_and_failed(clock, {"sim.Node": obs("sim.Node", "a"),
                                    "sim.Workload": obs("sim.Workload")}, 10)
    snap = take(ScriptedObserver({"sim.Node": obs("sim.Node", "b"),
                                  "sim.Workload": obs("sim.Workload")}), clock, previous=good)
    assert [r.key.name for r in snap.resources] == ["b"]


def test_the_fallback_takes_only_its_own_kind_and_rounds_its_age():
    clock = FakeClock()
    good = first_and_failed(clock, {"sim.Node": obs("sim.Node", "n"),
                                    "sim.Workload": obs("sim.Workload", "w")}, 30.1234)
    snap = take(ScriptedObserver({"sim.Node": TemporaryError("down"),
                                  "sim.Workload": TemporaryError("down")}), clock, previous=good)
    assert sorted(str(r.key) for r in snap.resources) == ["sim.Node/n", "sim.Workload/w"]
    assert snap.kinds["sim.Node"].stale_age_s == 30.123 and snap.kinds["sim.Node"].count == 1


def test_a_fallback_exactly_max_stale_old_is_still_used():
    clock = FakeClock()
    good = first_and_failed(clock, {"sim.Node": obs("sim.Node", "n"),
                                    "sim.Workload": obs("sim.Workload")}, 5.0)
    options = SenseOptions(deadline_s=5.0, max_stale_s=5.0)
    snap = sense(ScriptedObserver({"sim.Node": TemporaryError("x"),
                                   "sim.Workload": obs("sim.Workload")}),
                 ["sim.Node", "sim.Workload"], target="t", correlation_id="c", clock=clock,
                 options=options, previous=good)
    assert snap.kinds["sim.Node"].fidelity == "stale"


def test_no_fallback_from_an_incomplete_or_already_stale_observation():
    clock = FakeClock()
    partial = first_and_failed(clock, {"sim.Node": obs("sim.Node", "n", completeness=0.5),
                                       "sim.Workload": obs("sim.Workload")}, 1)
    failing = ScriptedObserver({"sim.Node": TemporaryError("x"),
                                "sim.Workload": obs("sim.Workload")})
    assert take(failing, clock, previous=partial).kinds["sim.Node"].fidelity == "degraded"
    good = first_and_failed(clock, {"sim.Node": obs("sim.Node", "n"),
                                    "sim.Workload": obs("sim.Workload")}, 1)
    stale = take(failing, clock, previous=good)
    assert stale.kinds["sim.Node"].fidelity == "stale"
    clock.advance(1)
    again = take(failing, clock, previous=stale)
    assert again.kinds["sim.Node"].fidelity == "degraded" and not again.resources


def test_the_page_latency_a_provider_measured_is_kept_to_the_microsecond():
    answers = {"sim.Node": Observation(kind="sim.Node", resources=(), completeness=1.0,
                                       page_latency_s=0.1234567),
               "sim.Workload": obs("sim.Workload")}
    assert take(ScriptedObserver(answers)).kinds["sim.Node"].page_latency_s == 0.123457


class Overlap:
    """Real threads: each listing waits (up to ``hold_s``) for another to start beside it, and
    the most listings running at once is kept; ``release`` lets hung kinds go."""

    def __init__(self, hold_s=0.5, hang=()):
        self.hold_s, self.hang = hold_s, set(hang)
        self.lock, self.other = threading.Lock(), threading.Event()
        self.release = threading.Event()
        self.running = self.most = 0
        self.started = []

    def observe(self, kind, timeout_s):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.started.append(kind)
            if self.running > 1:
                self.other.set()
        if kind in self.hang:
            self.release.wait(5)
        else:
            self.other.wait(self.hold_s)
        with self.lock:
            self.running -= 1
        return obs(kind)


@pytest.mark.parametrize(("workers", "most"), [(1, 1), (2, 2)])
def test_no_more_listings_run_at_once_than_the_workers_asked_for(workers, most):
    overlap = Overlap()
    snap = sense(overlap, ["sim.Node", "sim.Workload"], target="t", correlation_id="c",
                 clock=FakeClock(), options=SenseOptions(max_workers=workers))
    assert overlap.most == most and all(s.complete for s in snap.kinds.values())


def test_listings_still_queued_at_the_deadline_are_cancelled_not_run_later():
    kinds = ["sim.Node", "sim.Workload", "ec2.Instance"]
    overlap = Overlap(hang={"sim.Node"})
    snap = sense(overlap, kinds, target="t", correlation_id="c", clock=FakeClock(),
                 options=SenseOptions(max_workers=1, deadline_s=0.2))
    overlap.release.set()  # the hung call returns; the pool's thread is free again
    time.sleep(0.5)
    assert overlap.started == ["sim.Node"]  # the queued two never reached the provider
    assert [snap.kinds[k].errors for k in kinds[1:]] == [("no answer within 0.2s",)] * 2
