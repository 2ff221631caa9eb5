"""The one cycle's decisions (core.cycle), as properties over random cycle states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core import cycle
from reconciler.core.breaker import BreakerState
from reconciler.core.model import ActionResult, Drift, ResourceKey
from reconciler.core.policy import Policy, Window
from reconciler.testing import MemoryStore, RecordingSink

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
STATUSES = ("failed", "busy", "blocked", "needs_approval", "deadline", "no_progress")

drifts = st.builds(
    lambda n, total, urgency: Drift(magnitude=float(n), fraction=n / total if total else 0.0,
                                    urgency=urgency if n else "none", drifted=n, total=total),
    st.integers(0, 5), st.integers(5, 10), st.sampled_from(["low", "high", "critical"]))
stops = st.builds(cycle.Stop, status=st.sampled_from(STATUSES),
                  reason=st.one_of(st.none(), st.text(max_size=8)))
verifies = st.builds(cycle.Verified, drift=drifts, within=st.booleans(), settled=st.booleans(),
                     in_flight=st.integers(0, 2), deadline=st.booleans(),
                     conflicts_only=st.lists(st.sampled_from(["sim.Node/a", "sim.Node/b"]),
                                             max_size=2).map(tuple))
passes = st.lists(st.builds(
    cycle.PassRecord, number=st.integers(1, 3),
    plan_hash=st.one_of(st.none(), st.sampled_from(["h1", "h2"])),
    approval=st.sampled_from(["not_needed", "approved", "rejected", "timed_out"]),
    verified=st.one_of(st.none(), verifies), stop=st.one_of(st.none(), stops),
    changed=st.lists(st.sampled_from(["sim.Node/a:x", "sim.Node/b:y"]), max_size=2).map(tuple)),
    max_size=3)
routes = st.one_of(st.none(), st.builds(
    cycle.Route, route=st.sampled_from(["record", "report", "plan", "page"]),
    status=st.one_of(st.none(), st.sampled_from(["in_sync", "reported", "breaker_open"]))))
states = st.builds(
    cycle.CycleState, target=st.just("t"), correlation_id=st.just("c1"), started_at=st.just(T0),
    deadline_at=st.just(T0 + timedelta(minutes=15)), dry_run=st.booleans(),
    invalid=st.one_of(st.none(), st.just("desired.yaml:3: spec: bad")),
    initial_drift=st.one_of(st.none(), drifts), route=routes,
    halt=st.one_of(st.none(), stops), passes=passes)
results = st.lists(st.builds(
    ActionResult, action_id=st.sampled_from(["a1", "a2"]),
    key=st.just(ResourceKey(kind="sim.Node", name="a")), type=st.just("update"),
    state=st.sampled_from(["succeeded", "failed", "skipped"]), error=st.just("boom")),
    max_size=3)


@settings(max_examples=300, deadline=None)
@given(states, results)
def test_a_dry_run_records_nothing_whatever_it_found(state, forward):
    """No history, audit, breaker or lease change; the sinks still hear how it ended."""
    state = state.model_copy(update={"dry_run": True})
    store, sink = MemoryStore(), RecordingSink()
    store.acquire_lease("t", "someone-else", 60)
    before = store.load_breaker("t")
    outcome = cycle.finish(state, forward, policy=Policy(breaker_failures=1), store=store,
                           events=sink, now=T0)
    assert outcome.dry_run
    assert not store.cycles and not store.events and not store.operator
    assert store.load_breaker("t") == before and store.leases["t"][0] == "someone-else"
    assert "cycle_finished" in sink.types()


@settings(max_examples=300, deadline=None)
@given(states, results)
def test_the_status_follows_the_documented_precedence(state, forward):
    stop = cycle.conclude(state, forward)
    if state.invalid:
        assert stop.status == "invalid_input"
    elif state.halt:
        assert stop == state.halt
    elif state.route and state.route.status:
        assert stop.status == state.route.status
    elif any(r.state == "failed" for r in forward):
        assert stop.status == "failed"
    outcome = cycle.make_outcome(state, forward, finished_at=T0)
    assert outcome.converged == (outcome.status in ("converged", "in_sync"))
    assert outcome.plan_hashes == tuple(p.plan_hash for p in state.passes if p.plan_hash)
    assert set(outcome.changed_fields) == {c for p in state.passes for c in p.changed}


@settings(max_examples=300, deadline=None)
@given(states, results)
def test_only_a_cycle_that_acted_is_counted_by_the_breaker(state, forward):
    store = MemoryStore()
    outcome = cycle.finish(state, forward, policy=Policy(breaker_failures=1), store=store,
                           events=RecordingSink(), now=T0)
    counted = store.load_breaker("t").consecutive_failures > 0 or \
        store.load_breaker("t").state == "open"
    assert counted == (state.acted and outcome.counts_as_failure)
    assert (len(store.cycles) == 1) == (not state.dry_run and outcome.status != "invalid_input")


@settings(max_examples=500, deadline=None)
@given(drifts, st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_a_route_that_acts_needs_drift_a_closed_breaker_no_dry_run_and_an_open_window(
        drift, dry_run, breaker_open, manual, window_open):
    policy = Policy(auto_apply=("high", "critical"),
                    windows=() if window_open else (Window(days=(), start_hour=0, end_hour=1),))
    breaker = BreakerState(target="t", state="open" if breaker_open else "closed")
    route = cycle.decide_route(drift, policy, breaker=breaker, dry_run=dry_run, manual=manual,
                               now=T0)
    acts = route.route in ("plan", "page")
    assert acts == (drift.drifted > 0 and not (drift.urgency != "critical" and drift.fraction
                                               <= policy.tolerance.drift_fraction)
                    and not dry_run and not breaker_open and window_open
                    and (manual or drift.urgency in policy.auto_apply))
    assert acts == (route.status is None)
    assert (route.route == "page") == (acts and drift.urgency == "critical")
