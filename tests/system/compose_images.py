"""The images docker-compose.yaml names, built here where no registry is reachable.

Stand-ins for the official images (``postgres``, ``redis``, ``apache/airflow``) from Debian
packages: one ``mmdebstrap`` root filesystem (``standins/``) imported three times with a
different entrypoint, so the engine stores one layer for all three. The project's own images
(targets ``airflow`` and ``moto`` of deploy/Dockerfile) are then built by that Dockerfile
unchanged, with ``AIRFLOW_BASE_IMAGE`` pointing at the Airflow stand-in.

The Airflow stand-in carries the machine's CPython 3.11.7 (Debian's 3.11.2 is too old for the
runtime lock) and the machine's CA bundle with ``PIP_CERT``, which pip needs to reach PyPI
from here; it is a test image only, never one users get.

Built images are cached as one ``docker save`` tarball per hash of their inputs in
``~/.cache/reconciler-images`` and loaded when the hash matches.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STANDINS = Path(__file__).resolve().parent / "standins"
CACHE = Path(os.environ.get("RECONCILER_IMAGE_CACHE",
                            Path.home() / ".cache" / "reconciler-images"))
PYTHON = Path("/root/.pyenv/versions/3.11.7")
SUITE = "bookworm"
PACKAGES = ["ca-certificates", "curl", "procps", "postgresql-15", "redis-server", "redis-tools",
            # what the copied CPython links against
            "libssl3", "libffi8", "libsqlite3-0", "libbz2-1.0", "liblzma5", "libreadline8",
            "zlib1g", "libncursesw6", "libgdbm6", "libuuid1", "libexpat1"]
# The build context deploy/Dockerfile.dockerignore lets through (plus the Dockerfile).
CONTEXT = ["requirements.txt", "deploy/requirements-moto.txt", "pyproject.toml", "README.md",
           "deploy/Dockerfile"]
HASHED = ["requirements.txt", "deploy/requirements-moto.txt", "pyproject.toml",
          "deploy/Dockerfile"]


@dataclass(frozen=True)
class Images:
    """Image names for docker-compose.yaml's variables, and how they were obtained."""

    tag: str
    how: str  # "built" or "cached"
    seconds: float

    def env(self) -> dict[str, str]:
        return {
            "POSTGRES_IMAGE": f"reconciler-standin-postgres:{self.tag}",
            "REDIS_IMAGE": f"reconciler-standin-redis:{self.tag}",
            "AIRFLOW_BASE_IMAGE": f"reconciler-standin-airflow-base:{self.tag}",
            "RECONCILER_IMAGE": f"reconciler-airflow:{self.tag}",
            "MOTO_IMAGE": f"reconciler-moto:{self.tag}",
        }


def inputs_hash() -> str:
    """Everything an image's content depends on. The package source (include/) is left out:
    the image installs it editable and compose bind-mounts include/ over it."""
    digest = hashlib.sha256(f"{SUITE} {PACKAGES} {PYTHON.name}".encode())
    files = sorted(STANDINS.iterdir()) + [ROOT / name for name in HASHED]
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def _run(args: list[str], env: dict[str, str], **kw: object) -> None:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, **kw)  # type: ignore
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args[:4])} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")


def _mirror() -> str:
    for line in Path("/etc/apt/sources.list.d/debian.sources").read_text().splitlines():
        if line.startswith("URIs:"):
            return line.split()[1]
    return "http://deb.debian.org/debian"


def _rootfs(tar: Path, env: dict[str, str]) -> None:
    copy_python = (f"tar -C {PYTHON} --exclude=./lib/python3.11/site-packages/* "
                   "--exclude=./lib/python3.11/test --exclude=*/__pycache__ --exclude=*/idlelib "
                   "--exclude=*/tkinter --exclude=*/_tkinter.* --exclude=*/nis.* -c . "
                   '| tar -C "$1/usr/local" -x')
    _run(["mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
          f"--customize-hook={copy_python}",
          "--customize-hook=copy-in standin-postgres standin-redis standin-airflow "
          "/usr/local/bin/",
          "--customize-hook=copy-in setup-rootfs.sh /tmp/",
          "--customize-hook=upload /etc/ssl/certs/ca-certificates.crt "
          "/etc/ssl/certs/ca-certificates.crt",
          '--customize-hook=chroot "$1" bash /tmp/setup-rootfs.sh',
          '--customize-hook=rm -f "$1/tmp/setup-rootfs.sh"',
          SUITE, str(tar), _mirror()], env, cwd=STANDINS)


def _import_standins(tar: Path, images: dict[str, str], env: dict[str, str]) -> None:
    path = "/home/airflow/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    changes = {
        "POSTGRES_IMAGE": ['ENTRYPOINT ["/usr/local/bin/standin-postgres"]', "USER postgres",
                           "ENV PGHOST=/tmp"],
        "REDIS_IMAGE": ['ENTRYPOINT ["/usr/local/bin/standin-redis"]', "USER redis"],
        "AIRFLOW_BASE_IMAGE": ['ENTRYPOINT ["/usr/local/bin/standin-airflow"]', "USER airflow",
                               "WORKDIR /opt/airflow", f"ENV PATH={path}",
                               "ENV AIRFLOW_HOME=/opt/airflow", "ENV HOME=/home/airflow",
                               "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt"],
    }
    for var, lines in changes.items():
        _run(["docker", "import", *[f"--change={c}" for c in lines], str(tar), images[var]], env)


def _context(into: Path) -> None:
    for name in CONTEXT:
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, into / name)
    shutil.copytree(ROOT / "include" / "reconciler", into / "include" / "reconciler",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _build_project(images: dict[str, str], work: Path, env: dict[str, str]) -> None:
    _context(work / "context")
    # the classic builder: the client has no buildx here (the context is already filtered)
    build_env = {**env, "DOCKER_BUILDKIT": "0"}

    def build(target: str, var: str) -> None:
        _run(["docker", "build", "--network", "host", "-q", "-f",
              str(work / "context" / "deploy" / "Dockerfile"), "--target", target,
              "--build-arg", f"AIRFLOW_BASE_IMAGE={images['AIRFLOW_BASE_IMAGE']}",
              "-t", images[var], str(work / "context")], build_env, timeout=1200)

    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(build, "airflow", "RECONCILER_IMAGE"),
                     pool.submit(build, "moto", "MOTO_IMAGE")]:
            done.result()


def ensure_images(env: dict[str, str]) -> Images:
    """Load the images from the cache, or build and cache them; the engine is ``env``'s."""
    started = time.monotonic()
    tag = inputs_hash()
    images = Images(tag, "", 0).env()
    cached = CACHE / f"{tag}.tar"
    if cached.exists():
        _run(["docker", "load", "-q", "-i", str(cached)], env)
        return Images(tag, "cached", time.monotonic() - started)
    with tempfile.TemporaryDirectory(prefix="reconciler-images-") as tmp:
        work = Path(tmp)
        _rootfs(work / "rootfs.tar", env)
        _import_standins(work / "rootfs.tar", images, env)
        _build_project(images, work, env)
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = CACHE / f".{tag}.tar.partial"
        _run(["docker", "save", "-o", str(partial), *images.values()], env)
        for old in CACHE.glob("*.tar"):
            old.unlink()  # one generation kept: the images are large
        partial.rename(cached)
    return Images(tag, "built", time.monotonic() - started)
