"""Keyed digests of values that must never be kept in clear (container environment values).

A value is replaced by ``hmac:<16 hex>``, an HMAC-SHA256 under the deployment's key, as soon as
it is read — from the desired source or from the cloud — so compare still sees a change (the
digests differ) while snapshots, diffs, plans, audit rows, events and pages hold no value. A
keyed digest, not a plain hash: without the key a short value (``LOG_LEVEL=debug``) cannot be
guessed back from its digest.

The key, in this order: ``$RECONCILER_DIGEST_KEY``; a registered source (the Airflow plugin
registers the Variable ``reconciler_digest_key``); else a key generated once per install and
kept in ``$RECONCILER_HOME/digest.key`` (mode 0600). Every process of a deployment must use
the same key, or each sees the other's digests as drift.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path

__all__ = ["KEY_ENV", "KEY_FILE", "MIN_KEY_LENGTH", "PREFIX", "digest", "is_digest",
           "digest_key", "register_key_source", "keeping_clear", "keep_clear"]

KEY_ENV = "RECONCILER_DIGEST_KEY"
KEY_FILE = "digest.key"
MIN_KEY_LENGTH = 16
PREFIX = "hmac:"
_DIGEST = re.compile(r"hmac:[0-9a-f]{16}")

KeySource = Callable[[], str | None]
_sources: list[KeySource] = []
_cache: dict[tuple[str, ...], bytes] = {}
_clear: ContextVar[bool] = ContextVar("reconciler_keep_clear", default=False)


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def digest(value: str, key: bytes | None = None) -> str:
    """``hmac:<first 16 hex of HMAC-SHA256(key, value)>``; a digest is returned as it is."""
    if is_digest(value):
        return value
    mac = hmac.new(key if key is not None else digest_key(), value.encode(), hashlib.sha256)
    return PREFIX + mac.hexdigest()[:16]


def register_key_source(source: KeySource) -> None:
    """Add a place to read the key from (after the environment, before the per-install file)."""
    if source not in _sources:
        _sources.append(source)


def digest_key() -> bytes:
    """The deployment's key (see the module docstring); cached per process and setting."""
    env_key = os.environ.get(KEY_ENV, "")
    home = _home()
    cache_key = (env_key, str(home), *(str(id(s)) for s in _sources))
    found = _cache.get(cache_key)
    if found is None:
        found = _cache[cache_key] = _resolve(env_key, home)
    return found


def _resolve(env_key: str, home: Path) -> bytes:
    if env_key:
        return _checked(env_key, f"${KEY_ENV}")
    for source in _sources:  # a source that fails raises: falling back would split the keys
        value = source()
        if value:
            return _checked(value, "a registered key source")
    return _install_key(home / KEY_FILE)


def _checked(key: str, where: str) -> bytes:
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"digest key from {where} is shorter than {MIN_KEY_LENGTH} characters")
    return key.encode()


def _home() -> Path:
    # as reconciler.config.reconciler_home (not imported: the kinds import this module)
    home = os.environ.get("RECONCILER_HOME")
    return Path(home) if home else Path.cwd() / ".reconciler"


def _install_key(path: Path) -> bytes:
    """The per-install key: made once (atomically, 0600), read by every later process."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")  # created 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return _checked(path.read_text().strip(), str(path))


def keeping_clear() -> bool:
    """Whether specs validated now keep their values (only while sending them to the cloud)."""
    return _clear.get()


@contextlib.contextmanager
def keep_clear() -> Iterator[None]:
    """Validate specs without digesting, for the one read that resolves values to send."""
    token = _clear.set(True)
    try:
        yield
    finally:
        _clear.reset(token)
