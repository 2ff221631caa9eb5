"""Run a real Airflow 3 topology on loopback, one process per component, each stoppable by PID.

Used by the demo (``make demo``) and the system tests. ``airflow standalone`` is not used for
tests because signalling its parent orphans its children; here every component is our child,
in its own process group, stopped with SIGTERM then SIGKILL.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# The LocalExecutor's workers fork from a forkserver that has imported these once; every task
# process (os.fork of a worker) then starts with them instead of importing them itself.
# great_expectations is ~2 CPU-s to import and validate runs once per cycle: with plain fork
# workers that import was most of a no-drift cycle's CPU.
TASK_PRELOAD = ",".join([
    "airflow.executors.local_executor", "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner", "airflow.providers.standard.operators.python",
    "pandas", "great_expectations", "reconciler_airflow.factory",
    "reconciler.orchestration.pipeline", "reconciler.orchestration.quality",
])

__all__ = ["AirflowStack", "celery_env", "free_port", "ROOT"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def celery_env(sql_conn: str, broker_url: str, result_backend: str | None = None,
               visibility_timeout_s: int = 21600) -> dict[str, str]:
    """Settings for CeleryExecutor: metadata DB (``postgresql+psycopg2://``), Redis broker,
    result backend (default: the metadata DB, ``db+`` and the same driver), worker hostnames."""
    backend = result_backend or f"db+{sql_conn}"  # db+postgresql:// alone means psycopg 3 now
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_conn,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": backend,
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(visibility_timeout_s),
        # two workers on one host share its FQDN; record each task's Celery node (-H wN@%h)
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "reconciler_airflow.hostname.worker_hostname",
    }


@dataclass
class AirflowStack:
    home: Path
    port: int = field(default_factory=free_port)
    executor: str = "LocalExecutor"
    sql_conn: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    parallelism: int = 8
    user: str = "admin"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        self.home.mkdir(parents=True, exist_ok=True)
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({self.user: self.password}))
        secret_file = self.home / "jwt_secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(32))
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.user}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text(),
            "AIRFLOW__API__SECRET_KEY": secret_file.read_text(),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_conn
            or f"sqlite:///{self.home}/airflow.db",
            **({} if self.sql_conn else {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS":
                                         "reconciler_airflow.metadb.SQLITE_CONNECT_ARGS"}),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
            "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": TASK_PRELOAD,
        }
        env.update(self.extra_env)
        return env

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PYTHON, "-m", "airflow", *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def prepare(self) -> None:
        """Migrate the metadata DB and create the pools the targets need."""
        for step in (["airflow", "db", "migrate"], ["reconciler_airflow.setup"]):
            cmd = [PYTHON, "-m", *step]
            out = subprocess.run(cmd, env={**self.env(), "PYTHONPATH": str(ROOT / "plugins")},
                                 capture_output=True, text=True, timeout=600)
            if out.returncode:
                raise RuntimeError(f"{' '.join(step)} failed:\n{out.stderr[-3000:]}")

    def start(self, *components: str) -> None:
        names = components or ("api-server", "scheduler", "dag-processor", "triggerer")
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name in names:
            args = name.split()
            log = open(logs / f"{args[0]}-{len(self.procs)}.out", "wb")
            self.procs[name] = subprocess.Popen(
                [PYTHON, "-m", "airflow", *args], env=self.env(), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, timeout_s: float = 20) -> None:
        for proc in self.procs.values():
            _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait(10)
        self.procs.clear()

    def kill(self, name: str) -> None:
        """``kill -9`` one component's whole process group (a worker crash)."""
        proc = self.procs.pop(name)
        _signal(proc, signal.SIGKILL)
        proc.wait(10)

    # -- REST ---------------------------------------------------------------------------------

    def wait_healthy(self, timeout_s: float = 180,
                     need: tuple[str, ...] = ("metadatabase", "scheduler", "triggerer",
                                              "dag_processor")) -> dict[str, Any]:
        deadline, last = time.monotonic() + timeout_s, {}
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                last = self.request("GET", "/api/v2/monitor/health", auth=False)
                if all(last.get(c, {}).get("status") == "healthy" for c in need):
                    return last
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow not healthy after {timeout_s}s: {last}\n{self.tail()}")

    def token(self) -> str:
        if self._token is None:
            reply = self.request("POST", "/auth/token",
                                 {"username": self.user, "password": self.password}, auth=False)
            self._token = str(reply["access_token"])
        return self._token

    def request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from exc
        return json.loads(raw) if raw else None

    def wait_dag(self, dag_id: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.request("GET", f"/api/v2/dags/{dag_id}")
                return
            except RuntimeError:
                time.sleep(1)
        raise TimeoutError(f"{dag_id} never appeared\n{self.tail()}")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                           {"logical_date": None, "conf": conf or {}})
        return str(run["dag_run_id"])

    def wait_run(self, dag_id: str, run_id: str, timeout_s: float = 300) -> str:
        deadline = time.monotonic() + timeout_s
        state = "queued"
        while time.monotonic() < deadline:
            state = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return str(state)
            self._check_alive()
            time.sleep(1)
        raise TimeoutError(f"{dag_id}/{run_id} still {state} after {timeout_s}s\n{self.tail()}")

    def wait_idle(self, dag_id: str, timeout_s: float = 300) -> None:
        """Wait until no run of ``dag_id`` is queued or running (e.g. the start-up run)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            runs = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
            if not [r for r in runs if r["state"] in ("queued", "running")]:
                return
            self._check_alive()
            time.sleep(1)
        raise TimeoutError(f"{dag_id} still busy after {timeout_s}s\n{self.tail()}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run, page by page: the API caps a page at
        ``[api] maximum_page_limit`` (100) whatever ``limit`` asks, and a run with a few
        hundred mapped batches has more."""
        out: list[dict[str, Any]] = []
        while True:
            reply = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
                                        f"?limit=100&offset={len(out)}&order_by=id")
            page = list(reply["task_instances"])
            out += page
            if not page or len(out) >= int(reply["total_entries"]):
                return out

    def _check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"Airflow components exited: {dead}\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        out = []
        for f in sorted((self.home / "logs").glob("*.out")):
            text = f.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {f.name}\n" + "\n".join(text))
        return "\n".join(out)


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
