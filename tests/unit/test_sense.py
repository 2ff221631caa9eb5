"""sense: completeness, fidelity, stale fallback, deadline and correlation id."""

from __future__ import annotations

import threading
from datetime import timedelta

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
