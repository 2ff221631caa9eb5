"""One real Airflow (api-server + scheduler + dag-processor, LocalExecutor, SQLite) with the
dashboard plugin, shared by the API and browser tests; it ran one real cycle before they start.

Two simulated targets: ``web`` (a node was deleted; the cycle recreates it) and ``edge`` (never
run). Two users: ``admin`` (admin) and ``viewer`` (viewer: may read, not act). Task processes
send StatsD metrics to a loopback listener and events to a loopback webhook.
"""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ui.support import ROOT, StatsdListener, Webhook, seed_fleet, token_for, write_targets

sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import AirflowStack

TARGETS = ["web", "edge"]


@dataclass
class Dashboard:
    stack: AirflowStack
    root: Path
    store_url: str
    run_id: str
    correlation_id: str
    passwords: dict[str, str]
    statsd: StatsdListener
    hook: Webhook

    @property
    def url(self) -> str:
        return self.stack.url

    def token(self, user: str = "admin") -> str:
        return token_for(self.url, user, self.passwords[user])

    def store(self) -> Any:
        from reconciler.store import open_store

        return open_store(self.store_url)


def _env(root: Path, config: Path, store_url: str, statsd: StatsdListener, hook: Webhook,
         passwords: Path) -> dict[str, str]:
    return {
        "RECONCILER_CONFIG": str(config), "RECONCILER_HOME": str(root / "reconciler"),
        "RECONCILER_STORE_URL": store_url, "RECONCILER_EVENTS_WEBHOOK": hook.url,
        "AIRFLOW__METRICS__STATSD_ON": "True", "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from reconciler.orchestration.runtime import correlation_id_for_run

    root = tmp_path_factory.mktemp("ui")
    config = write_targets(root, TARGETS)
    for name in TARGETS:
        seed_fleet(root, name)
    seed_fleet(root, "web").delete("sim.Node", "node-a2")
    store_url = f"sqlite:///{root}/reconciler/state.db"
    users = {"admin": secrets.token_urlsafe(12), "viewer": secrets.token_urlsafe(12)}
    passwords = root / "users.json"
    passwords.write_text(json.dumps(users))
    statsd, hook = StatsdListener(), Webhook()
    stack = AirflowStack(root / "airflow", password=users["admin"], parallelism=4,
                         extra_env=_env(root, config, store_url, statsd, hook, passwords))
    try:
        stack.prepare()
        stack.start("api-server", "scheduler", "dag-processor")
        stack.wait_healthy(need=("metadatabase", "scheduler", "dag_processor"))
        for name in TARGETS:
            stack.wait_dag(f"reconcile__{name}")
        run_id = stack.trigger("reconcile__web")
        assert stack.wait_run("reconcile__web", run_id, timeout_s=240) == "success", stack.tail()
        yield Dashboard(stack, root, store_url, run_id, correlation_id_for_run("web", run_id),
                        users, statsd, hook)
    finally:
        stack.stop()
        statsd.close()
        hook.close()
