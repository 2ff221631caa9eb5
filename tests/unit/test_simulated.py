"""The simulated provider: idempotent applies, guards, faults, persistence and concurrency."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.catalogue import REGISTRY
from reconciler.core.errors import PermanentError, TemporaryError
from reconciler.core.model import (
    Action,
    ActionType,
    ObservedResource,
    ResourceKey,
)
from reconciler.core.ports import Provider
from reconciler.providers.simulated import (
    PAGE_ATTEMPTS,
    Faults,
    SimulatedProvider,
    generate_fleet,
)

NODE = {"pool": "general", "instance_type": "m5.large", "zone": "zone-a", "labels": {"a": "1"}}
WORKLOAD = {"replicas": 3, "containers": [{"name": "app", "image": "nginx:1.25"}]}


def act(
    type_: ActionType,
    name: str,
    spec: dict[str, Any] | None = None,
    *,
    kind: str = "sim.Workload",
    token: str | None = None,
) -> Action:
    return Action(
        id=f"{type_}-{name}",
        type=type_,
        target=ResourceKey(kind=kind, name=name),
        params={} if spec is None else {"spec": spec},
        idempotency_token=token or f"tok-{type_}-{name}",
    )


def fleet_of(n: int, *, page_size: int = 10, **kwargs: Any) -> SimulatedProvider:
    provider = SimulatedProvider(":memory:", page_size=page_size, **kwargs)
    provider.put_many(("sim.Workload", f"wl-{i:03d}", WORKLOAD) for i in range(n))
    return provider


# -- idempotent outcomes -------------------------------------------------------------------


def test_serves_exactly_the_sim_kinds_of_the_catalogue() -> None:
    provider: Provider = SimulatedProvider(":memory:")  # mypy checks the port is implemented
    assert provider.kinds() == {k for k in REGISTRY if k.startswith("sim.")}


def test_create_then_replay_is_unchanged_and_a_new_spec_updates() -> None:
    provider = SimulatedProvider(":memory:")
    assert provider.apply(act("create", "web", WORKLOAD)) == "created"
    assert provider.apply(act("create", "web", WORKLOAD)) == "unchanged"
    scaled = {**WORKLOAD, "replicas": 5}
    assert provider.apply(act("create", "web", scaled, token="other")) == "updated"
    resource = provider.get("sim.Workload", "web")
    assert resource is not None and resource.spec == scaled and resource.managed


def test_update_sets_the_full_spec_and_creates_when_absent() -> None:
    provider = SimulatedProvider(":memory:")
    assert provider.apply(act("update", "web", WORKLOAD)) == "created"
    assert provider.apply(act("update", "web", WORKLOAD)) == "unchanged"
    assert provider.apply(act("update", "web", {**WORKLOAD, "replicas": 1})) == "updated"
    assert provider.count() == 1


def test_delete_reports_deleted_then_already_gone_is_unchanged() -> None:
    provider = SimulatedProvider(":memory:")
    provider.apply(act("create", "web", WORKLOAD))
    assert provider.apply(act("delete", "web")) == "deleted"
    assert provider.apply(act("delete", "web")) == "unchanged"
    assert provider.count() == 0


def test_create_without_a_spec_mapping_is_permanent() -> None:
    with pytest.raises(PermanentError, match="spec"):
        SimulatedProvider(":memory:").apply(act("create", "web"))


def test_a_kind_it_does_not_serve_is_refused_not_listed() -> None:
    provider = SimulatedProvider(":memory:")
    with pytest.raises(PermanentError, match="not served"):
        provider.apply(act("create", "i-1", {"x": 1}, kind="ec2.Instance"))
    observation = provider.observe("ec2.Instance", 10)
    assert observation.completeness == 0.0 and observation.errors
    with pytest.raises(ValueError):
        provider.put("ec2.Instance", "i-1", {})


# -- ownership and protection --------------------------------------------------------------


def test_unmanaged_resources_are_never_modified_or_deleted() -> None:
    provider = SimulatedProvider(":memory:")
    provider.put("sim.Workload", "by-hand", WORKLOAD, managed=False)
    for action in (act("update", "by-hand", {**WORKLOAD, "replicas": 9}), act("delete", "by-hand")):
        with pytest.raises(PermanentError, match="not owned"):
            provider.apply(action)
    assert provider.get("sim.Workload", "by-hand") == ObservedResource.model_validate(
        {
            "key": {"kind": "sim.Workload", "name": "by-hand"},
            "spec": WORKLOAD,
            "managed": False,
            "provider_id": provider.resources()[0].provider_id,
        }
    )
    assert provider.stats.mutations == 0


def test_protected_resources_can_be_updated_but_never_deleted() -> None:
    provider = SimulatedProvider(":memory:")
    provider.put("sim.Node", "n1", NODE, protected=True)
    assert provider.apply(act("update", "n1", {**NODE, "zone": "zone-b"}, kind="sim.Node")) == (
        "updated"
    )
    with pytest.raises(PermanentError, match="protected"):
        provider.apply(act("delete", "n1", kind="sim.Node"))
    assert provider.count("sim.Node") == 1


# -- apply faults ----------------------------------------------------------------------------


def test_a_lost_response_create_is_not_duplicated_by_the_retry() -> None:
    provider = SimulatedProvider(":memory:", faults=Faults(lose_response_rate=1.0))
    action = act("create", "web", WORKLOAD)
    with pytest.raises(TemporaryError, match="response lost"):
        provider.apply(action)
    provider.faults = Faults()
    assert provider.apply(action) == "unchanged"
    assert provider.count() == 1
    assert provider.stats.mutations == 1 and provider.stats.lost_responses == 1


def test_a_replayed_create_token_is_unchanged_even_after_out_of_band_drift() -> None:
    provider = SimulatedProvider(":memory:")
    action = act("create", "web", WORKLOAD)
    provider.apply(action)
    provider.table.set_spec("sim.Workload", "web", {**WORKLOAD, "replicas": 0})  # keeps the token
    assert provider.apply(action) == "unchanged"
    assert provider.apply(act("update", "web", WORKLOAD)) == "updated"


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        (Faults(failure_rate=1.0), TemporaryError),
        (Faults(throttle_rate=1.0), TemporaryError),
        (Faults(permanent_failure_rate=1.0), PermanentError),
        (Faults(fail_actions=frozenset({"sim.Workload/web"})), PermanentError),
    ],
)
def test_injected_apply_failures_change_nothing(faults: Faults, error: type[Exception]) -> None:
    provider = SimulatedProvider(":memory:", faults=faults)
    with pytest.raises(error):
        provider.apply(act("create", "web", WORKLOAD))
    assert provider.count() == 0 and provider.stats.mutations == 0


def test_fail_actions_fails_only_the_named_keys() -> None:
    provider = SimulatedProvider(
        ":memory:", faults=Faults(fail_actions=frozenset({"sim.Workload/a"}))
    )
    assert provider.apply(act("create", "b", WORKLOAD)) == "created"
    with pytest.raises(PermanentError):
        provider.apply(act("create", "a", WORKLOAD))


def test_a_throttled_apply_hints_a_delay_and_is_counted() -> None:
    provider = SimulatedProvider(":memory:", faults=Faults(throttle_rate=1.0))
    with pytest.raises(TemporaryError) as caught:
        provider.apply(act("create", "web", WORKLOAD))
    assert caught.value.delay == 1.0 and provider.stats.throttled == 1


def test_latency_goes_through_the_injected_sleep() -> None:
    slept: list[float] = []
    provider = fleet_of(25, faults=Faults(latency_s=0.25), clock_sleep=slept.append)
    provider.apply(act("create", "web", WORKLOAD))
    assert slept == [0.25]
    provider.observe("sim.Workload", 60)
    assert slept == [0.25] * 4  # one apply, then three pages of ten


# -- observe --------------------------------------------------------------------------------


def test_observe_lists_every_resource_in_name_order_with_full_completeness() -> None:
    provider = fleet_of(25)
    provider.put("sim.Workload", "by-hand", WORKLOAD, managed=False, protected=True)
    observation = provider.observe("sim.Workload", 10)
    names = [r.key.name for r in observation.resources]
    assert names == sorted(names) and len(names) == 26
    assert observation.completeness == 1.0 and observation.errors == ()
    by_hand = next(r for r in observation.resources if r.key.name == "by-hand")
    assert not by_hand.managed and by_hand.protected and by_hand.provider_id


def test_observed_models_are_ordinary_valid_models() -> None:
    for resource in fleet_of(3).observe("sim.Workload", 10).resources:
        assert ObservedResource.model_validate_json(resource.model_dump_json()) == resource


def test_lost_pages_are_missing_and_completeness_is_ok_pages_over_pages() -> None:
    provider = fleet_of(100, faults=Faults(partial_rate=0.5), rng=random.Random(3))
    observation = provider.observe("sim.Workload", 10)
    ok_pages = len(observation.resources) // 10
    assert 0 < ok_pages < 10
    assert observation.completeness == ok_pages / 10
    assert len(observation.errors) == 10 - ok_pages
    assert all("listing error" in e for e in observation.errors)


def test_a_kind_whose_listing_fails_has_completeness_zero() -> None:
    observation = fleet_of(5, faults=Faults(fail_kinds=frozenset({"sim.Workload"}))).observe(
        "sim.Workload", 10
    )
    assert observation.completeness == 0.0 and observation.resources == ()
    assert observation.errors


def test_an_empty_200_page_looks_complete_because_the_provider_cannot_know() -> None:
    observation = fleet_of(5, faults=Faults(empty_kinds=frozenset({"sim.Workload"}))).observe(
        "sim.Workload", 10
    )
    assert observation.completeness == 1.0 and observation.resources == ()
    assert observation.errors == ()


def test_an_empty_kind_is_one_empty_page_fully_observed() -> None:
    observation = SimulatedProvider(":memory:").observe("sim.Node", 10)
    assert observation.completeness == 1.0 and observation.resources == ()


def test_a_timeout_stops_paging_and_the_rest_counts_as_missing() -> None:
    slept: list[float] = []
    provider = fleet_of(50, faults=Faults(latency_s=1.0), clock_sleep=slept.append)
    observation = provider.observe("sim.Workload", timeout_s=2.5)
    assert slept == [1.0, 1.0]
    assert len(observation.resources) == 20
    assert observation.completeness == pytest.approx(0.4)
    assert "timed out after 2 pages" in observation.errors


def test_throttled_pages_are_retried_and_counted() -> None:
    provider = fleet_of(100, faults=Faults(throttle_rate=0.5), rng=random.Random(1))
    observation = provider.observe("sim.Workload", 10)
    assert observation.throttled > 0
    assert observation.throttled == provider.stats.throttled
    assert observation.completeness == len(observation.resources) / 100


def test_a_page_throttled_every_time_is_lost_after_a_bounded_number_of_tries() -> None:
    provider = fleet_of(30, faults=Faults(throttle_rate=1.0))
    observation = provider.observe("sim.Workload", 10)
    assert observation.completeness == 0.0
    assert observation.throttled == 3 * PAGE_ATTEMPTS
    assert len(observation.errors) == 3


def test_errors_are_capped_with_a_summary_line() -> None:
    provider = fleet_of(300, faults=Faults(partial_rate=1.0))
    errors = provider.observe("sim.Workload", 10).errors
    assert len(errors) == 21 and errors[-1] == "... and 10 more page errors"


def test_faults_replay_exactly_with_the_same_seed() -> None:
    def run(seed: int) -> list[object]:
        faults = Faults(failure_rate=0.3, throttle_rate=0.2, partial_rate=0.3)
        provider = fleet_of(60, faults=faults, rng=random.Random(seed))
        trace: list[object] = []
        for i in range(20):
            try:
                trace.append(provider.apply(act("create", f"new-{i}", WORKLOAD)))
            except TemporaryError as exc:
                trace.append(str(exc))
            observation = provider.observe("sim.Workload", 10)
            trace.append((observation.completeness, observation.errors, observation.throttled))
        return trace

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_fault_rates_are_validated() -> None:
    with pytest.raises(ValidationError):
        Faults(failure_rate=1.5)


# -- stats ----------------------------------------------------------------------------------


def test_stats_count_calls_writes_and_outcomes() -> None:
    provider = SimulatedProvider(":memory:")
    provider.apply(act("create", "web", WORKLOAD))
    provider.apply(act("create", "web", WORKLOAD))
    provider.apply(act("delete", "web"))
    provider.observe("sim.Workload", 10)
    stats = provider.stats
    assert (stats.apply_calls, stats.observe_calls, stats.mutations) == (3, 1, 2)
    assert stats.outcomes == {"created": 1, "unchanged": 1, "deleted": 1}


# -- persistence and concurrency ------------------------------------------------------------


def test_two_instances_on_one_file_see_the_same_fleet(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    with SimulatedProvider(path) as first:
        first.apply(act("create", "web", WORKLOAD))
    with SimulatedProvider(path) as second:
        assert [r.key.name for r in second.observe("sim.Workload", 10).resources] == ["web"]
        assert second.apply(act("create", "web", WORKLOAD)) == "unchanged"
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _apply_all(path: str, prefix: str, n: int) -> dict[str, int]:
    """Create ``n`` resources of our own and ``n`` shared with every other worker."""
    # real 1 ms latency releases the GIL between calls, so workers really interleave
    with SimulatedProvider(path, faults=Faults(latency_s=0.001)) as provider:
        for i in range(n):
            provider.apply(act("create", f"{prefix}-{i}", WORKLOAD))
            provider.apply(act("create", f"shared-{i}", WORKLOAD, token=f"{prefix}-{i}"))
        return dict(provider.stats.outcomes)


def test_four_threads_applying_to_one_file_lose_no_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "fleet.db")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(_apply_all, [path] * 4, "abcd", [25] * 4))
    assert SimulatedProvider(path).count() == 4 * 25 + 25
    assert sum(r.get("created", 0) for r in results) == 125  # each shared key once


def test_one_instance_shared_by_four_threads_is_safe() -> None:
    provider = SimulatedProvider(":memory:", faults=Faults(latency_s=0.001))

    def work(prefix: str) -> None:
        for i in range(25):
            provider.apply(act("create", f"{prefix}-{i}", WORKLOAD))
            provider.apply(act("create", f"shared-{i}", WORKLOAD))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, "abcd"))
    assert provider.count() == 125 and provider.stats.outcomes["created"] == 125
    assert provider.stats.apply_calls == 200


def test_two_processes_applying_to_one_file_lose_no_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "fleet.db")
    SimulatedProvider(path).close()  # create the file before the race
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        results = list(pool.map(_apply_all, [path, path], ["p", "q"], [40, 40]))
    assert SimulatedProvider(path).count() == 2 * 40 + 40
    assert sum(r.get("created", 0) for r in results) == 120


# -- fleet helpers ----------------------------------------------------------------------------


def test_observing_100k_resources_returns_every_one_of_them() -> None:
    provider = SimulatedProvider(":memory:")
    provider.put_many(generate_fleet(100_000, random.Random(0)))
    nodes, workloads = (provider.observe(k, 60) for k in ("sim.Node", "sim.Workload"))
    assert (len(nodes.resources), len(workloads.resources)) == (20_000, 80_000)
    assert nodes.completeness == workloads.completeness == 1.0
    names = [r.key.name for r in workloads.resources]
    assert names == sorted(set(names))
    assert workloads.resources[123] == provider.get("sim.Workload", names[123])
