"""Snapshot and plan artifacts in a folder or under an ``s3://`` prefix; callers pass references."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from reconciler.home import reconciler_home

__all__ = ["ArtifactStore", "FolderArtifacts", "S3Artifacts", "artifact_location",
           "open_artifacts"]


class ArtifactStore(Protocol):
    def put(self, name: str, data: dict[str, Any] | list[Any]) -> str:
        """Store JSON under ``name``; return a reference (a path or s3:// URI)."""
        ...

    def get(self, ref: str) -> Any: ...

    def ref(self, name: str) -> str:
        """The reference ``put(name, ...)`` returns, without writing anything."""
        ...


def _safe(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".", "..")]
    if not parts:
        raise ValueError(f"bad artifact name {name!r}")
    return "/".join(parts)


class FolderArtifacts:
    """Artifacts as files; writes are atomic (temp file + rename) so readers never see half."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def ref(self, name: str) -> str:
        return str(self.root / _safe(name))

    def put(self, name: str, data: dict[str, Any] | list[Any]) -> str:
        path = self.root / _safe(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, separators=(",", ":"), default=str)
        os.replace(tmp, path)
        return str(path)

    def get(self, ref: str) -> Any:
        return json.loads(Path(ref).read_text())


class S3Artifacts:
    """Artifacts as S3 objects (boto3 imported lazily; AWS_ENDPOINT_URL points it anywhere)."""

    def __init__(self, uri: str, client: Any = None) -> None:
        parsed = urlparse(uri)
        self.bucket, self.prefix = parsed.netloc, parsed.path.strip("/")
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def ref(self, name: str) -> str:
        return f"s3://{self.bucket}/" + "/".join(p for p in (self.prefix, _safe(name)) if p)

    def put(self, name: str, data: dict[str, Any] | list[Any]) -> str:
        key = self.ref(name).removeprefix(f"s3://{self.bucket}/")
        body = json.dumps(data, separators=(",", ":"), default=str).encode()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                               ContentType="application/json")
        return f"s3://{self.bucket}/{key}"

    def get(self, ref: str) -> Any:
        parsed = urlparse(ref)
        obj = self.client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
        return json.loads(obj["Body"].read())


def artifact_location(configured: str | None, target: str) -> str:
    """Where a target's artifacts live: its ``artifacts`` setting, else under RECONCILER_HOME."""
    return configured or str(reconciler_home() / "artifacts" / target)


def open_artifacts(location: str) -> ArtifactStore:
    if location.startswith("s3://"):
        return S3Artifacts(location)
    return FolderArtifacts(location)
