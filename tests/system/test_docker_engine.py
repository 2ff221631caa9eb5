"""The private Docker engine the compose test stands on: it runs containers, gives a user-defined
network service-name DNS (what Compose relies on), and leaves nothing behind, failure or not.

Uses the Redis stand-in of ``compose_images`` (cached; loaded in seconds once built).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.system.compose_images import ensure_images
from tests.system.docker_engine import available, docker_engine

pytestmark = [pytest.mark.system, pytest.mark.compose, pytest.mark.timeout(1800)]


def _docker(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_containers_resolve_each_other_by_name_and_everything_is_removed() -> None:
    why_not = available()
    if why_not:
        pytest.fail(f"no private Docker engine here: {why_not}")
    with docker_engine() as env:
        root = Path(env["RECONCILER_DOCKERD_ROOT"])
        pid = int((root / "dockerd.pid").read_text())
        assert env["DOCKER_HOST"] == f"unix://{root / 'docker.sock'}"
        redis = ensure_images(env).env()["REDIS_IMAGE"]
        _docker(env, "network", "create", "probe-net")
        _docker(env, "run", "-d", "--name", "cache", "--network", "probe-net", redis)
        reply = _docker(env, "run", "--rm", "--network", "probe-net", "--entrypoint", "bash",
                        redis, "-c",
                        "for i in $(seq 50); do redis-cli -h cache ping && exit; sleep 0.2; done")
        assert reply.endswith("PONG")
    assert not root.exists()
    assert not os.path.exists(f"/proc/{pid}")
    mounts = Path("/proc/mounts").read_text()
    assert str(root) not in mounts


def test_a_failure_inside_still_stops_the_engine() -> None:
    seen: dict[str, str] = {}
    with pytest.raises(RuntimeError, match="inside"), docker_engine() as env:
        seen.update(env)
        _docker(env, "info")
        raise RuntimeError("inside")
    root = Path(seen["RECONCILER_DOCKERD_ROOT"])
    assert not root.exists()
