"""A private Docker engine for system tests: Debian's ``dockerd`` on its own socket and roots.

Never the machine's engine: data root, exec root, socket and pidfile are all in a fresh
directory, and everything started there is stopped and removed on exit, also on failure.
Facts this relies on: ``../shared/notes/docker-engine-here.md`` (no iptables, no default
bridge, so ``docker build`` needs ``--network host``; Compose networks work as usual).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DOCKERD = "/usr/sbin/dockerd"


def available() -> str | None:
    """Why no private engine can start here, or None when one can."""
    if os.geteuid() != 0:
        return "dockerd needs root"
    if not Path(DOCKERD).exists() or not shutil.which("docker"):
        return "docker.io is not installed (scripts/test.sh installs it)"
    return None


def _scratch() -> Path:
    """The engine's directory: tmpfs when there is room (vfs/overlay layers are copied there)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 12 * 2**30:
        return Path(tempfile.mkdtemp(prefix="reconciler-dockerd-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="reconciler-dockerd-"))


def _start(root: Path, driver: str) -> subprocess.Popen[bytes]:
    log = (root / f"dockerd-{driver}.log").open("wb")
    return subprocess.Popen(
        [DOCKERD, "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "dockerd.pid"), "--host", f"unix://{root / 'docker.sock'}",
         "--storage-driver", driver, "--iptables=false", "--ip6tables=false", "--bridge=none"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _ready(env: dict[str, str], proc: subprocess.Popen[bytes], timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        probe = subprocess.run(["docker", "info", "--format", "{{.Driver}}"], env=env,
                               capture_output=True, text=True)
        if probe.returncode == 0:
            return True
        time.sleep(0.3)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _unmount_under(root: Path) -> None:
    """Mounts the engine left behind (overlay layers, netns, shm), deepest first."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(str(root) + "/")),
                        key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


@contextmanager
def docker_engine() -> Iterator[dict[str, str]]:
    """Start a private dockerd (overlay2, else vfs); yield an env whose DOCKER_HOST is it."""
    root = _scratch()
    env = {**os.environ, "DOCKER_HOST": f"unix://{root / 'docker.sock'}"}
    env.pop("DOCKER_CONTEXT", None)
    proc: subprocess.Popen[bytes] | None = None
    try:
        for driver in ("overlay2", "vfs"):
            proc = _start(root, driver)
            if _ready(env, proc):
                break
            _stop(proc)
            _unmount_under(root)
            shutil.rmtree(root / "data", ignore_errors=True)
        else:
            logs = "".join(p.read_text()[-2000:] for p in root.glob("dockerd-*.log"))
            raise RuntimeError(f"dockerd did not start with overlay2 or vfs:\n{logs}")
        env["RECONCILER_DOCKERD_ROOT"] = str(root)
        yield env
    finally:
        if proc is not None:
            if proc.poll() is None:
                ids = subprocess.run(["docker", "ps", "-aq"], env=env, capture_output=True,
                                     text=True).stdout.split()
                if ids:
                    subprocess.run(["docker", "rm", "-f", "-v", *ids], env=env,
                                   capture_output=True, timeout=120)
            _stop(proc)
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
