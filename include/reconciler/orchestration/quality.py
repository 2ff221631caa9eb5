"""great-expectations suites gating a snapshot and the desired state (GX imported lazily)."""

from __future__ import annotations

from typing import Any

from reconciler.core.gate import GateVerdict, managed_bound, regional
from reconciler.core.model import DesiredState, Snapshot
from reconciler.core.policy import Policy

__all__ = ["GxGate"]


class GxGate:
    """Ids unique and non-null, counts within bounds, every kind fully observed: the rules of
    ``core.gate.basic_checks`` (the CLI's gate) stated as suites; tests hold the two equal.

    A failing gate blocks deletions for the cycle; it never silently passes. GX takes ~10 s to
    import here, so it is loaded on first use only (never at DAG parse time).
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def check(self, snapshot: Snapshot, desired: DesiredState) -> GateVerdict:
        import pandas as pd

        observed = pd.DataFrame(
            [{"kind": r.key.kind, "name": r.key.name, "managed": r.managed}
             for r in snapshot.resources], columns=["kind", "name", "managed"])
        # several regions: an incomplete kind blocks deletions in its region only (core.plan)
        kinds = pd.DataFrame([{"kind": k, "completeness": s.completeness}
                              for k, s in snapshot.kinds.items() if not regional(snapshot)],
                             columns=["kind", "completeness"])
        wanted = pd.DataFrame([{"kind": r.key.kind, "name": r.key.name}
                               for r in desired.resources], columns=["kind", "name"])
        managed = int(observed["managed"].sum()) if len(observed) else 0
        failures = _validate({
            "snapshot": (observed, _snapshot_suite()),
            "completeness": (kinds, _completeness_suite()),
            "desired": (wanted, _desired_suite(self.policy.allow_empty_desired)),
        })
        bound = managed_bound(desired)
        if managed > bound:
            failures.append(f"snapshot: {managed} managed resources, more than the expected "
                            f"bound {bound} (2 x desired + 10)")
        return GateVerdict(passed=not failures, failures=tuple(failures),
                           suite="great_expectations")


def _snapshot_suite() -> list[Any]:
    import great_expectations.expectations as gxe

    return [gxe.ExpectColumnValuesToNotBeNull(column="kind"),
            gxe.ExpectColumnValuesToNotBeNull(column="name"),
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["kind", "name"])]


def _completeness_suite() -> list[Any]:
    import great_expectations.expectations as gxe

    return [gxe.ExpectColumnValuesToBeBetween(column="completeness", min_value=1.0,
                                              max_value=1.0)]


def _desired_suite(allow_empty: bool) -> list[Any]:
    import great_expectations.expectations as gxe

    return [gxe.ExpectColumnValuesToNotBeNull(column="name"),
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["kind", "name"]),
            gxe.ExpectTableRowCountToBeBetween(min_value=0 if allow_empty else 1)]


def _validate(tables: dict[str, tuple[Any, list[Any]]]) -> list[str]:
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas("reconciler")
    failures: list[str] = []
    for name, (frame, expectations) in tables.items():
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        batch_def = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        result = batch_def.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
        failures += [f"{name}: {r.expectation_config.type} failed ({_detail(r)})"
                     for r in result.results if not r.success]
    return failures


def _detail(result: Any) -> str:
    info = result.result or {}
    kwargs = {k: v for k, v in result.expectation_config.kwargs.items() if k != "batch_id"}
    count = info.get("unexpected_count", info.get("observed_value"))
    return f"{kwargs}, observed {count}"
