"""Dashboard test helpers: simulated targets, a StatsD listener, a webhook, raw HTTP calls."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.webhook import Webhook  # noqa: F401  (re-exported for tests)

ROOT = Path(__file__).resolve().parents[2]
DEMO_DESIRED = ROOT / "include" / "desired" / "demo"


def write_targets(root: Path, names: list[str], extra_policy: str = "") -> Path:
    """A targets file with one simulated target per name (demo desired state, no schedule)."""
    state = root / "reconciler"
    state.mkdir(parents=True, exist_ok=True)
    lines = ["targets:"]
    for name in names:
        desired = root / "desired" / name
        desired.mkdir(parents=True, exist_ok=True)
        for f in DEMO_DESIRED.glob("*.yaml"):
            (desired / f.name).write_text(f.read_text())
        lines.append(textwrap.indent(textwrap.dedent(f"""\
            {name}:
              provider: {{type: simulated, options: {{state: "{state}/{name}-sim.db"}}}}
              desired: desired/{name}
              schedule: null
              policy: {{max_parallel: 4, max_delete_fraction: 0.5{extra_policy}}}
              artifacts: "{state}/artifacts/{name}"
              alerts: {{deadline: false}}
              airflow: {{retries: 2, retry_delay_seconds: 1}}
            """), "  "))
    config = root / "targets.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def seed_fleet(root: Path, name: str) -> Any:
    """The target's simulated fleet, made to match its desired state."""
    from reconciler.desired import load_desired
    from reconciler.providers.simulated import SimulatedProvider, seed_demo

    sim = SimulatedProvider(root / "reconciler" / f"{name}-sim.db")
    seed_demo(sim, load_desired(root / "desired" / name))
    return sim


class StatsdListener:
    """A UDP socket on loopback that keeps every StatsD line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.lines += data.decode(errors="replace").splitlines()

    def names(self) -> set[str]:
        return {line.split(":", 1)[0] for line in list(self.lines)}

    def values(self, name: str) -> list[str]:
        return [line.split(":", 1)[1] for line in list(self.lines)
                if line.split(":", 1)[0] == name]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def call(base: str, method: str, path: str, token: str | None = None,
         headers: dict[str, str] | None = None, body: Any = None) -> Reply:
    """One HTTP request; any status comes back as a Reply (redirects are not followed)."""
    hdrs = {"Accept": "application/json", **(headers or {})}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, method=method, headers=hdrs)
    try:
        with _OPENER.open(req, timeout=60) as resp:
            return Reply(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read(), dict(exc.headers))


def token_for(base: str, user: str, password: str) -> str:
    reply = call(base, "POST", "/auth/token", body={"username": user, "password": password})
    assert reply.status == 201, reply.text
    return str(reply.json()["access_token"])


def pipeline_cycle(target: str, correlation_id: str) -> dict[str, Any]:
    """One whole cycle through ``reconciler.orchestration.pipeline.Step`` the way the DAG's tasks
    run it
    (sense, compare, route, plan, actuate every batch, verify, record), without Airflow."""
    from datetime import UTC, datetime

    from reconciler.orchestration.pipeline import Step

    step = Step.open(target, correlation_id)
    step.begin(started_at=datetime.now(UTC))
    sensed = step.sense("sense")
    compared = step.compare(sensed.ref)
    step.route(compared.drift)
    planned = step.plan(sensed.ref, 1)
    for batch in planned.batches:
        step.actuate(batch)
    step.verified(step.verify(1, None, datetime.now(UTC).timestamp()))
    outcome = step.record().model_dump(mode="json")
    return {"step": step, "compared": compared, "planned": planned, "outcome": outcome}
