"""``reconcile import``: adopt a live fleet; planning the import with policy.adopt changes nothing
but ownership."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.catalogue import rules_for
from reconciler.catalogue.importer import import_resources, to_yaml
from reconciler.core.compare import OWNERSHIP_FIELD, compare
from reconciler.core.model import Snapshot
from reconciler.core.policy import Policy
from reconciler.core.sense import sense
from reconciler.desired import load_desired
from reconciler.providers.simulated import SimulatedProvider
from reconciler.testing import FakeClock
from tests.integration import test_cli
from tests.integration.test_cli import reconcile
from tests.strategies import node_specs, workload_specs

env = test_cli.env  # the fixture: a target "lab" on the simulated provider
SECRET = "s3cret-db-password"
BY_HAND = {"replicas": 1, "node_pool": "default", "labels": {"team": "search"},
           "containers": [{"name": "db", "image": "postgres:16", "cpu": 100, "memory": 128,
                           "env": {"DB_PASSWORD": SECRET, "MODE": "primary"}}]}


def _adopting_target(tmp_path: Path) -> None:
    """A second target on the same fleet whose desired state is the import, with adopt on."""
    config = tmp_path / "targets.yaml"
    config.write_text(config.read_text() + f"""\
  adopted:
    provider: {{type: simulated, options: {{state: "{tmp_path}/sim.db"}}}}
    desired: imported
    schedule: "10m"
    policy: {{adopt: true, backoff_base_s: 0.01, backoff_cap_s: 0.1}}
""")


def test_import_then_plan_with_adopt_only_adopts_and_env_values_are_never_written(env, tmp_path):
    assert reconcile(env, "sim", "seed", "--target", "lab").returncode == 0
    SimulatedProvider(tmp_path / "sim.db").put("sim.Workload", "search-db", BY_HAND,
                                               managed=False)
    _adopting_target(tmp_path)
    out_file = tmp_path / "imported" / "fleet.yaml"
    out_file.parent.mkdir()
    out = reconcile(env, "import", "--target", "lab", "--out", str(out_file))
    assert out.returncode == 0, out.stderr
    assert "imported 4 resources" in out.stderr and "1 not owned yet" in out.stderr
    text = out_file.read_text()
    assert SECRET not in text and "primary" not in text
    assert "DB_PASSWORD: null  # value not exported: fill it in" in text
    bad = reconcile(env, "validate", "--target", "adopted")
    assert bad.returncode == 1 and ".env.DB_PASSWORD" in bad.stderr, bad.stderr

    out_file.write_text(text.replace("DB_PASSWORD: null", f"DB_PASSWORD: {SECRET}")
                        .replace("MODE: null", "MODE: primary"))  # the user fills them in
    plan = reconcile(env, "plan", "--target", "adopted", "--json")
    assert plan.returncode == 2, plan.stdout + plan.stderr  # taking ownership is the change
    actions = [a for w in json.loads(plan.stdout.splitlines()[-1])["plan"]["waves"]
               for a in w["actions"]]
    assert [(a["type"], a["target"]["name"], a["params"].get("adopt")) for a in actions] == [
        ("update", "search-db", True)]
    # (the simulated provider cannot take ownership yet: the moto test applies the adoption)


def test_import_to_stdout_by_kind_and_selector(env, tmp_path):
    reconcile(env, "sim", "seed", "--target", "lab")
    sim = SimulatedProvider(tmp_path / "sim.db")
    sim.put("sim.Node", "node-9", {"pool": "default", "labels": {"team": "db"}}, managed=False)
    out = reconcile(env, "import", "--target", "lab", "--kind", "sim.Node",
                    "--selector", "team=db")
    assert out.returncode == 0, out.stderr
    assert "name: node-9" in out.stdout and "node-1" not in out.stdout
    assert "sim.Workload" not in out.stdout.split("resources:")[1]


def test_import_refuses_what_it_cannot_do_safely(env, tmp_path):
    reconcile(env, "sim", "seed", "--target", "lab")
    existing = tmp_path / "desired" / "fleet.yaml"
    before = existing.read_text()
    out = reconcile(env, "import", "--target", "lab", "--out", str(existing))
    assert out.returncode == 1 and "exists: nothing written" in out.stderr
    assert existing.read_text() == before
    out = reconcile(env, "import", "--target", "lab", "--kind", "ec2.Instance")
    assert out.returncode == 1 and "has no kind ec2.Instance" in out.stderr
    config = tmp_path / "targets.yaml"
    state = f'state: "{tmp_path}/sim.db"'
    config.write_text(config.read_text().replace(
        state, f"{state}, faults: {{fail_kinds: [sim.Node]}}"))
    out = reconcile(env, "import", "--target", "lab", "--out", str(tmp_path / "new.yaml"))
    assert out.returncode == 1 and "import refused" in out.stderr, out.stderr
    assert "sim.Node: 0% observed" in out.stderr and not (tmp_path / "new.yaml").exists()


# -- the round trip on random fleets (in-process: the importer, the loader and compare) ------

def _fleet(kind: str, specs: st.SearchStrategy[dict[str, Any]]
           ) -> st.SearchStrategy[dict[str, tuple[dict[str, Any], bool, bool]]]:
    """name -> (spec, managed, protected); protection only on what the target owns."""
    entry = st.tuples(specs, st.booleans(), st.booleans()).map(
        lambda t: (t[0], t[1], t[1] and t[2]))
    return st.dictionaries(st.sampled_from([f"{kind[4]}{i}" for i in range(8)]), entry,
                           max_size=8)


def _snapshot(sim: SimulatedProvider) -> Snapshot:
    return sense(sim, ("sim.Node", "sim.Workload"), target="t", correlation_id="c",
                 clock=FakeClock())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=_fleet("sim.Node", node_specs), workloads=_fleet("sim.Workload", workload_specs))
def test_importing_any_fleet_then_comparing_with_adopt_changes_only_ownership(nodes, workloads):
    with tempfile.TemporaryDirectory() as tmp:
        sim = SimulatedProvider(Path(tmp) / "sim.db")
        for kind, fleet in (("sim.Node", nodes), ("sim.Workload", workloads)):
            for name, (spec, managed, protected) in fleet.items():
                sim.put(kind, name, spec, managed=managed, protected=protected)
        snap = _snapshot(sim)
        result = import_resources(snap, ("sim.Node", "sim.Workload"))
        assert result.problems == ()
        (Path(tmp) / "desired").mkdir()
        (Path(tmp) / "desired" / "fleet.yaml").write_text(to_yaml(result, ["imported"]))
        desired = load_desired(Path(tmp) / "desired", allow_empty=True,
                               now=datetime(2026, 1, 1, tzinfo=UTC))
        sim.close()
    diff, _ = compare(desired.resources, snap, rules=rules_for(), policy=Policy(adopt=True))
    assert (diff.additions, diff.deletions, diff.conflicts) == ((), (), ())
    unowned = sorted(str(r.key) for r in snap.resources if not r.managed)
    assert sorted(str(m.key) for m in diff.modifications) == unowned
    assert {c.path for m in diff.modifications for c in m.changes} <= {OWNERSHIP_FIELD}
    assert diff.unchanged == len(snap.resources) - len(unowned)
