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
