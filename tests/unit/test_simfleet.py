"""Helpers of the simulated fleet: generated fleets, seeding a desired state, realistic drift."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.catalogue import REGISTRY
from reconciler.core.model import Action, ActionType, DesiredResource, DesiredState, ResourceKey
from reconciler.providers.simulated import (
    SimulatedProvider,
    generate_fleet,
    inject_drift,
    seed_demo,
)

NODE = {"pool": "general", "instance_type": "m5.large", "zone": "zone-a", "labels": {"a": "1"}}
WORKLOAD = {"replicas": 3, "containers": [{"name": "app", "image": "nginx:1.25"}]}


def desired(*resources: tuple[str, str, dict[str, Any], bool]) -> DesiredState:
    return DesiredState(
        resources=tuple(
            DesiredResource(key=ResourceKey(kind=k, name=n), spec=s, protected=p)
            for k, n, s, p in resources
        ),
        version="v1",
        source_uri="memory://test",
        loaded_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_generated_fleets_are_valid_and_mostly_workloads() -> None:
    fleet = generate_fleet(1000, random.Random(0))
    assert len({(k, n) for k, n, _ in fleet}) == 1000
    assert sum(k == "sim.Node" for k, _, _ in fleet) == 200
    for kind, _, spec in fleet:
        REGISTRY[kind].spec_model.model_validate(spec)
    assert generate_fleet(50, random.Random(4)) == generate_fleet(50, random.Random(4))


def test_seed_demo_makes_the_fleet_exactly_the_desired_state(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    with SimulatedProvider(path) as provider:
        provider.put("sim.Workload", "stale", WORKLOAD, managed=False)
    state = desired(("sim.Node", "n1", NODE, True), ("sim.Workload", "web", WORKLOAD, False))
    assert seed_demo(path, state) == 2
    with SimulatedProvider(path) as provider:
        found = {(r.key.kind, r.key.name): r for r in provider.resources()}
    assert set(found) == {("sim.Node", "n1"), ("sim.Workload", "web")}
    assert found["sim.Node", "n1"].protected and found["sim.Node", "n1"].spec == NODE
    assert all(r.managed for r in found.values())


def _seeded(n: int, *, protected: bool = False) -> SimulatedProvider:
    provider = SimulatedProvider(":memory:")
    fleet = generate_fleet(n, random.Random(2))
    seed_demo(provider, desired(*((k, name, s, protected) for k, name, s in fleet)))
    return provider


def test_inject_drift_changes_a_fraction_and_adds_two_strays() -> None:
    provider = _seeded(50)
    before = {r.key: r.spec for r in provider.resources()}
    notes = inject_drift(provider, random.Random(5), fraction=0.2)
    after = {r.key: r for r in provider.resources()}
    assert len(notes) == 10 + 2
    changed = [k for k, spec in before.items() if k not in after or after[k].spec != spec]
    assert len(changed) == 10
    strays = [r for k, r in after.items() if k not in before]
    assert sorted(r.managed for r in strays) == [False, True]
    assert "must be left alone" in notes[-2] and "orphan" in notes[-1]


def test_inject_drift_is_reproducible_and_never_deletes_protected_resources() -> None:
    first, second = _seeded(30, protected=True), _seeded(30, protected=True)
    notes = inject_drift(first, random.Random(9), fraction=1.0)
    assert notes == inject_drift(second, random.Random(9), fraction=1.0)
    assert first.count() == 30 + 2
    assert not any("deleted out of band" in note for note in notes)


def act(type_: ActionType, key: ResourceKey, spec: dict[str, Any]) -> Action:
    return Action(
        id=f"{type_}-{key}",
        type=type_,
        target=key,
        params={"spec": spec},
        idempotency_token=f"tok-{key}",
    )


def test_a_converged_fleet_gets_zero_mutating_calls() -> None:
    provider = SimulatedProvider(":memory:")
    state = desired(("sim.Node", "n1", NODE, True), ("sim.Workload", "web", WORKLOAD, False))
    seed_demo(provider, state)
    for resource in state.resources:
        provider.apply(act("update", resource.key, resource.spec))
    assert provider.stats.mutations == 0 and provider.stats.apply_calls == 2
