"""A ready-made cycle on the simulated provider with in-memory store and a fake clock."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from reconciler.catalogue import rules_for
from reconciler.core.gate import BasicGate
from reconciler.core.loop import CycleDeps, CycleReport, CycleRequest, run_cycle
from reconciler.core.model import DesiredResource, DesiredState
from reconciler.core.policy import Policy
from reconciler.providers.simulated import Faults, SimulatedProvider
from reconciler.testing import FakeClock, MemoryStore, RecordingSink
from tests.builders import NOW


@dataclass
class Rig:
    """One target's world: fleet, store, clock, events. ``cycle()`` runs one reconciliation."""

    provider: SimulatedProvider
    clock: FakeClock = field(default_factory=FakeClock)
    store: MemoryStore = field(default_factory=MemoryStore)
    events: RecordingSink = field(default_factory=RecordingSink)
    n: int = 0

    @classmethod
    def make(cls, faults: Faults = Faults(), seed: int = 0) -> Rig:
        clock = FakeClock()
        provider = SimulatedProvider(":memory:", faults=faults, clock_sleep=clock.sleep,
                                     rng=random.Random(seed), page_size=50)
        return cls(provider=provider, clock=clock)

    def cycle(self, desired: list[DesiredResource] | DesiredState, policy: Policy = Policy(),
              **request: Any) -> CycleReport:
        self.n += 1
        state = desired if isinstance(desired, DesiredState) else DesiredState(
            resources=tuple(desired), version="v1", source_uri="test", loaded_at=NOW)
        req = CycleRequest(target="t", desired=state, policy=policy,
                           kinds=("sim.Node", "sim.Workload"), correlation_id=f"c-{self.n}",
                           **request)
        deps = CycleDeps(provider=self.provider, store=self.store, events=self.events,
                         clock=self.clock, gate=BasicGate(policy.allow_empty_desired),
                         rules=rules_for(), rng=random.Random(self.n))
        return run_cycle(req, deps)

    def fleet(self) -> dict[str, dict[str, Any]]:
        return {str(r.key): r.spec for r in self.provider.resources() if r.managed}
