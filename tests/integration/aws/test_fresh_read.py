"""The aws provider reads one resource as observe sees it: the guard's fresh read of an update."""

from __future__ import annotations

import pytest

from reconciler.core.model import Action, ResourceKey
from tests.integration.aws.support import Rig, cluster, group, node, service


def update_of(key: ResourceKey, spec: dict) -> Action:
    return Action(id=f"update:{key}", type="update", target=key, params={"spec": spec},
                  idempotency_token="t")


def test_each_readable_kind_reads_what_observe_lists(rig: Rig) -> None:
    desired = [node("web-1"), group("pool", desired=1), cluster("c1"), service("svc", "c1")]
    assert rig.cycle(desired).outcome.converged
    listed = rig.fleet()
    for want in desired:
        action = update_of(want.key, want.spec)
        if want.key.kind == "ecs.Cluster":
            with pytest.raises(LookupError):  # tags only: its apply checks ownership itself
                rig.provider.read(action)
            continue
        fresh = rig.provider.read(action)
        assert fresh is not None and fresh.managed, want.key
        assert fresh.spec == listed[str(want.key)], want.key
    missing = node("nope")
    assert rig.provider.read(update_of(missing.key, missing.spec)) is None
