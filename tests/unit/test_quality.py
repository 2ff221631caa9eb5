"""The great-expectations gate: passes a clean snapshot, fails duplicates and partial reads."""

from __future__ import annotations

import pytest

from reconciler.core.policy import Policy
from reconciler.orchestration.quality import GxGate
from tests.builders import desired_state, have, node, snapshot, want

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def gate() -> GxGate:
    return GxGate(Policy())


def test_clean_snapshot_passes(gate):
    verdict = gate.check(snapshot(have("sim.Node/a", node())),
                         desired_state(want("sim.Node/a", node())))
    assert verdict.passed and verdict.suite == "great_expectations", verdict.failures


def test_duplicate_ids_and_partial_reads_fail(gate):
    snap = snapshot(have("sim.Node/a", node()), have("sim.Node/a", node()),
                    completeness={"sim.Node": 0.5})
    verdict = gate.check(snap, desired_state(want("sim.Node/a", node())))
    assert not verdict.passed and verdict.blocks_deletions
    text = " ".join(verdict.failures)
    assert "compound_columns_to_be_unique" in text and "completeness" in text


def test_far_more_managed_resources_than_desired_fails(gate):
    snap = snapshot(*[have(f"sim.Node/n{i}", node()) for i in range(30)])
    verdict = gate.check(snap, desired_state(want("sim.Node/n0", node())))
    assert not verdict.passed and "expected bound" in verdict.failures[-1]


def test_a_partial_region_does_not_fail_the_gate_of_a_multi_region_snapshot(gate):
    """core.plan blocks deletions in that region only; the gate must not block them all."""
    kinds = ("sim.Node", "sim.Node@eu-west-1")
    snap = snapshot(have("sim.Node/a", node()), kinds=kinds,
                    completeness={"sim.Node@eu-west-1": 0.5})
    verdict = gate.check(snap, desired_state(want("sim.Node/a", node())))
    assert verdict.passed, verdict.failures
    single = snapshot(have("sim.Node/a", node()), completeness={"sim.Node": 0.5})
    assert not gate.check(single, desired_state(want("sim.Node/a", node()))).passed


def _case(n_have: int, n_want: int, *, dupe: bool = False, want_dupe: bool = False,
          partial: bool = False, unmanaged: int = 0):
    owned = [have(f"sim.Node/n{i}", node()) for i in range(n_have)]
    owned += [have("sim.Node/n0", node())] if dupe else []
    owned += [have(f"sim.Node/u{i}", node(), managed=False) for i in range(unmanaged)]
    wanted = [want(f"sim.Node/n{i}", node()) for i in range(n_want)]
    wanted += [want("sim.Node/n0", node())] if want_dupe else []
    completeness = {"sim.Node": 0.5} if partial else None
    return snapshot(*owned, completeness=completeness), desired_state(*wanted)


GATE_CASES = {
    "clean": _case(3, 3),
    "duplicate snapshot id": _case(3, 3, dupe=True),
    "duplicate desired id": _case(1, 2, want_dupe=True),
    "partial read": _case(3, 3, partial=True),
    "empty desired": _case(2, 0),
    "at the managed bound": _case(12, 1),
    "over the managed bound": _case(13, 1),
    "unmanaged do not count toward the bound": _case(12, 1, unmanaged=30),
}


@pytest.mark.parametrize("allow_empty", [False, True])
@pytest.mark.parametrize("name", sorted(GATE_CASES))
def test_both_drivers_gates_hold_one_rule_set(name, allow_empty):
    """The CLI's gate (plain Python) and Airflow's (great-expectations) give the same verdict:
    a snapshot the Airflow path would not delete from is not deleted from by `reconcile apply`."""
    from reconciler.core.gate import BasicGate

    snap, desired = GATE_CASES[name]
    gx = GxGate(Policy(allow_empty_desired=allow_empty)).check(snap, desired)
    basic = BasicGate(allow_empty).check(snap, desired)
    assert gx.passed == basic.passed, (gx.failures, basic.failures)
    assert len(gx.failures) >= 1 if not basic.passed else not gx.failures
    expected_pass = name in {"clean", "at the managed bound",
                             "unmanaged do not count toward the bound"} or (
        name == "empty desired" and allow_empty)
    assert basic.passed is expected_pass, basic.failures
