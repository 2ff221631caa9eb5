"""Hypothesis strategies: small fleets of valid sim resources, desired and observed."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from reconciler.core.model import DesiredResource, ResourceKey
from tests.builders import node, workload

labels = st.dictionaries(st.sampled_from(["team", "tier"]), st.sampled_from(["a", "b"]),
                         max_size=2)

node_specs = st.builds(
    lambda it, state, lab: node(instance_type=it, state=state, labels=lab),
    st.sampled_from(["m5.large", "m5.xlarge"]), st.sampled_from(["running", "stopped"]), labels,
)
workload_specs = st.builds(
    lambda r, img, lab: workload(replicas=r, image=img, labels=lab),
    st.integers(0, 4), st.sampled_from(["app:v1", "app:v2"]), labels,
)


def _fleet(kind: str, prefix: str, specs: st.SearchStrategy[dict[str, Any]]
           ) -> st.SearchStrategy[dict[str, dict[str, Any]]]:
    return st.dictionaries(st.sampled_from([f"{prefix}{i}" for i in range(6)]), specs,
                           max_size=6).map(lambda d: {f"{kind}/{k}": v for k, v in d.items()})


fleets = st.builds(lambda a, b: {**a, **b}, _fleet("sim.Node", "n", node_specs),
                   _fleet("sim.Workload", "w", workload_specs))


def desired_from(fleet: dict[str, dict[str, Any]], sla: str = "standard") -> list[DesiredResource]:
    return [DesiredResource(key=ResourceKey.parse(k), spec=v, sla=sla)  # type: ignore[arg-type]
            for k, v in sorted(fleet.items())]
