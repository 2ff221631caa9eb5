"""A real Airflow stack over simulated targets, shared by the system test modules.

Each module starts one stack (module fixture) over its own targets; this process reads the
same store and fleets through the environment the stack runs with.
"""

from __future__ import annotations

import functools
import os
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.webhook import Webhook

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import AirflowStack  # noqa: E402

__all__ = ["World", "SimTarget", "airflow_world"]


@dataclass(frozen=True)
class SimTarget:
    """One simulated target of the stack: YAML snippets as they go into targets.yaml."""

    schedule: str = '"0 0 1 1 *"'
    policy: str = "max_parallel: 4, max_delete_fraction: 0.5"  # the policy mapping's entries
    deadline_alert: bool = False
    faults: str = ""  # the simulated provider's faults, e.g. "{latency_s: 1}"
    extra_nodes: int = 0  # desired sim.Nodes beyond the demo's (extra-0, extra-1, ...)


@dataclass
class World:
    stack: AirflowStack
    hook: Webhook
    state: Path  # RECONCILER_HOME: store, fleets, artifacts
    env: dict[str, str]

    def fleet(self, name: str, seed: bool = True) -> Any:
        """The target's simulated fleet, exactly as desired when ``seed``."""
        from reconciler.desired import load_desired
        from reconciler.providers.simulated import SimulatedProvider, seed_demo

        sim = SimulatedProvider(self.state / f"{name}-sim.db")
        if seed:
            seed_demo(sim, load_desired(self.state.parent / "desired" / name))
        return sim

    @functools.cached_property
    def _store(self) -> Any:
        from reconciler.store import open_store

        return open_store()

    def store(self) -> Any:
        return self._store

    def cycles(self, name: str) -> list[Any]:
        return list(self.store().recent_cycles(name, 50))

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def task_state(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        for ti in self.stack.task_instances(dag_id, run_id):
            if ti["task_id"] == task_id and ti["map_index"] == map_index:
                return str(ti["state"])
        return "none"

    def wait_task(self, dag_id: str, run_id: str, task_id: str, states: tuple[str, ...],
                  timeout_s: float = 180) -> str:
        deadline, state = time.monotonic() + timeout_s, "none"
        while time.monotonic() < deadline:
            state = self.task_state(dag_id, run_id, task_id)
            if state in states:
                return state
            self.stack._check_alive()
            time.sleep(1)
        raise TimeoutError(f"{dag_id}/{run_id} {task_id} still {state}, not {states}\n"
                           f"{self.stack.tail()}")


def _sim_target(root: Path, state: Path, name: str, t: SimTarget) -> str:
    desired = root / "desired" / name
    desired.mkdir(parents=True)
    for f in (ROOT / "include" / "desired" / "demo").glob("*.yaml"):
        (desired / f.name).write_text(f.read_text())
    if t.extra_nodes:
        nodes = [f"  - {{kind: sim.Node, name: extra-{i}, spec: {{pool: extra, "
                 f"instance_type: m5.large, zone: zone-c, labels: {{team: platform}}}}}}"
                 for i in range(t.extra_nodes)]
        (desired / "extra.yaml").write_text("resources:\n" + "\n".join(nodes) + "\n")
    faults = f", faults: {t.faults}" if t.faults else ""
    return textwrap.indent(textwrap.dedent(f"""\
        {name}:
          provider: {{type: simulated, options: {{state: "{state}/{name}-sim.db"{faults}}}}}
          desired: desired/{name}
          schedule: {t.schedule}
          policy: {{{t.policy}}}
          alerts: {{deadline: {str(t.deadline_alert).lower()}}}
          airflow: {{retries: 2, retry_delay_seconds: 1}}
        """), "  ")


@contextmanager
def airflow_world(root: Path, targets: dict[str, SimTarget]) -> Iterator[World]:
    """Write the targets, start the stack, wait until every DAG is there and idle (a new DAG
    with a schedule gets one run at once)."""
    state = root / "reconciler"
    state.mkdir()
    config = root / "targets.yaml"
    config.write_text("\n".join(["targets:", *(_sim_target(root, state, n, t)
                                                for n, t in targets.items())]) + "\n")
    hook = Webhook()
    env = {"RECONCILER_CONFIG": str(config), "RECONCILER_HOME": str(state),
           "RECONCILER_STORE_URL": f"sqlite:///{state}/state.db",
           "RECONCILER_WEBHOOK_URL": hook.url,
           # this checkout's code, not whichever `reconciler` the venv has installed
           "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")])}
    saved = {k: os.environ.get(k) for k in env if k != "PYTHONPATH"}
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})
    stack = AirflowStack(root / "airflow", extra_env=env, parallelism=6)
    stack.prepare()
    stack.start()
    try:
        stack.wait_healthy()
        for name in targets:
            stack.wait_dag(f"reconcile__{name}")
        for name in targets:
            stack.wait_idle(f"reconcile__{name}")
        hook.bodies.clear()
        yield World(stack, hook, state, env)
    finally:
        stack.stop()
        hook.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pause(stack: AirflowStack, dag_id: str, paused: bool) -> None:
    """(Un)pause a DAG. A paused DAG's running runs stop being scheduled: they stay running."""
    stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})
