"""Reconciler's distributed topology on this machine, without Docker: the same shape as
``docker-compose.yaml``, as plain processes on loopback.

    python scripts/cluster.py start  [--home DIR] [--port 8080] [--workers 2] [--concurrency 2]
    python scripts/cluster.py status [--home DIR]
    python scripts/cluster.py stop   [--home DIR]

``start`` makes sure PostgreSQL and Redis answer on 127.0.0.1 (``scripts/services.sh``), creates
the two databases if missing (Airflow's metadata, Reconciler's state store), migrates Airflow,
creates the targets' pools, then starts api-server, scheduler, dag-processor, triggerer and
``airflow celery worker -H wN@%h`` processes, each in its own process group. Their PIDs go to
``<home>/pids.json``; ``stop`` sends SIGTERM to each group, waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from airflow_stack import ROOT, AirflowStack, celery_env

__all__ = ["Cluster", "main", "stop_pids"]

PG_ADMIN = os.environ.get("RECONCILER_PG_ADMIN_URL",
                          "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("RECONCILER_REDIS_URL", "redis://127.0.0.1:6379/0")
CORE = ("api-server", "scheduler", "dag-processor", "triggerer")


@dataclass
class Cluster:
    """PostgreSQL + Redis + Airflow (CeleryExecutor) with ``workers`` Celery workers."""

    home: Path
    airflow_db: str = "reconciler_airflow"
    state_db: str = "reconciler_state"
    pg_admin_url: str = PG_ADMIN
    redis_url: str = REDIS
    port: int = 8080
    workers: int = 2
    concurrency: int = 2
    config: Path | None = None  # the targets config; default $RECONCILER_CONFIG or the repo's
    reconciler_home: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    parallelism: int = 16
    _stack: AirflowStack | None = None

    def db_url(self, name: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.pg_admin_url).set(database=name).render_as_string(
            hide_password=False)

    def env(self) -> dict[str, str]:
        """Every Reconciler and Celery setting the processes get, as environment variables."""
        home = self.reconciler_home or self.home / "reconciler"
        config = self.config or Path(os.environ.get("RECONCILER_CONFIG")
                                     or ROOT / "include" / "config" / "targets.yaml")
        return {
            **celery_env(self.db_url(self.airflow_db), self.redis_url),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
            # a dead worker's running tasks are failed, then retried elsewhere, after this long
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
            "RECONCILER_CONFIG": str(config),
            "RECONCILER_HOME": str(home),
            "RECONCILER_STORE_URL": self.db_url(self.state_db),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "plugins"), str(ROOT / "include"),
                                                      os.environ.get("PYTHONPATH")) if p),
            **self.extra_env,
        }

    @property
    def stack(self) -> AirflowStack:
        if self._stack is None:
            self._stack = AirflowStack(self.home / "airflow", port=self.port,
                                       executor="CeleryExecutor",
                                       sql_conn=self.db_url(self.airflow_db),
                                       extra_env=self.env(), parallelism=self.parallelism,
                                       password=self._password())
        return self._stack

    def _password(self) -> str:
        """The admin password, kept in the home so ``status`` and later starts agree."""
        path = self.home / "admin-password"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(12))
            path.chmod(0o600)
        return path.read_text().strip()

    def worker(self, n: int) -> str:
        """The component name (and command line) of worker ``n`` (1-based)."""
        return f"celery worker -H w{n}@%h --concurrency {self.concurrency}"

    # -- services and databases -----------------------------------------------------------

    def ensure_services(self) -> None:
        out = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh")],
                             capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise RuntimeError(f"services.sh failed:\n{out.stdout}{out.stderr}")

    def create_databases(self) -> list[str]:
        """Create the metadata and state databases if missing; returns those created."""
        created = []
        with self._admin() as conn:
            for name in (self.airflow_db, self.state_db):
                exists = conn.exec_driver_sql(
                    "SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": name}).first()
                if not exists:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
                    created.append(name)
        return created

    def drop_databases(self) -> None:
        with self._admin() as conn:
            for name in (self.airflow_db, self.state_db):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self) -> Any:
        import sqlalchemy as sa

        engine = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT",
                                  poolclass=sa.pool.NullPool)
        return engine.connect()

    # -- processes ------------------------------------------------------------------------

    def start(self, wait_s: float = 240) -> None:
        """Services, databases, migration, pools; then every component; wait until healthy."""
        self.ensure_services()
        self.create_databases()
        (self.reconciler_home or self.home / "reconciler").mkdir(parents=True, exist_ok=True)
        self.stack.prepare()
        self.stack.start(*CORE, *(self.worker(n) for n in range(1, self.workers + 1)))
        self._write_pids()
        if wait_s:
            self.stack.wait_healthy(wait_s)
            self.wait_workers(wait_s)

    def wait_workers(self, timeout_s: float = 120) -> list[str]:
        """Wait until every worker answers a Celery ping; returns their node names."""
        deadline = time.monotonic() + timeout_s
        want = {f"w{n}" for n in range(1, self.workers + 1)}
        seen: list[str] = []
        while time.monotonic() < deadline:
            out = self.stack.airflow("celery", "list-workers", "-o", "json", timeout=60)
            try:
                seen = [w["worker_name"] for w in json.loads(out.stdout or "[]")]
            except (ValueError, KeyError, TypeError):
                seen = []
            if want <= {name.split("@")[0] for name in seen}:
                return seen
            self.stack._check_alive()
            time.sleep(2)
        raise TimeoutError(f"workers not ready after {timeout_s}s: {seen}\n{self.stack.tail()}")

    def pids(self) -> dict[str, int]:
        path = self.home / "pids.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_pids(self) -> None:
        pids = {name: proc.pid for name, proc in self.stack.procs.items()}
        (self.home / "pids.json").write_text(json.dumps(pids, indent=2) + "\n")
        (self.home / "url").write_text(self.stack.url + "\n")

    def kill(self, name: str) -> None:
        """``kill -9`` one component's process group (a crash), and forget its PID."""
        self.stack.kill(name)
        self._write_pids()

    def stop(self, timeout_s: float = 30) -> dict[str, int]:
        """Stop every component by PID: SIGTERM each process group, wait, SIGKILL the rest."""
        pids = {**self.pids(), **{n: p.pid for n, p in self.stack.procs.items()}}
        self.stack.stop(timeout_s)  # our own children: signalled and reaped
        stop_pids(pids, timeout_s)  # started by an earlier `cluster.py start`
        (self.home / "pids.json").unlink(missing_ok=True)
        return pids


def stop_pids(pids: dict[str, int], timeout_s: float = 30) -> None:
    """SIGTERM each process group, wait up to ``timeout_s`` for all, then SIGKILL survivors."""
    for pid in pids.values():
        _killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_group_alive(p) for p in pids.values()):
        time.sleep(0.2)
    for pid in pids.values():
        _killpg(pid, signal.SIGKILL)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Any non-zombie process left in process group ``pgid`` (read from /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--home", type=Path, default=ROOT / ".reconciler" / "cluster")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--config", type=Path, help="targets config (default $RECONCILER_CONFIG)")
    parser.add_argument("--airflow-db", default="reconciler_airflow")
    parser.add_argument("--state-db", default="reconciler_state")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    cluster = Cluster(args.home.resolve(), airflow_db=args.airflow_db, state_db=args.state_db,
                      port=args.port, workers=args.workers, concurrency=args.concurrency,
                      config=args.config.resolve() if args.config else None)
    if args.command == "stop":
        stopped = cluster.stop()
        print(f"stopped {len(stopped)} process groups: {stopped}")
        return 0
    if args.command == "status":
        alive = {name: pid for name, pid in cluster.pids().items() if _group_alive(pid)}
        url = (cluster.home / "url").read_text().strip() if alive else None
        print(json.dumps({"url": url, "alive": alive}, indent=2))
        return 0 if alive else 1
    if any(_group_alive(pid) for pid in cluster.pids().values()):
        print(f"already running ({cluster.home / 'pids.json'}); stop it first", file=sys.stderr)
        return 1
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    print(f"Airflow UI and REST API: {cluster.stack.url}  (user {cluster.stack.user}, password "
          f"in {cluster.home / 'admin-password'})\nlogs: {cluster.stack.home / 'logs'}\n"
          f"stop:  python scripts/cluster.py stop --home {cluster.home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
