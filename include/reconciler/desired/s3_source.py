"""Desired state from a versioned S3 prefix; its version is the set of object version ids."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from reconciler.core.errors import InvalidDesiredState, SourceLocation, TemporaryError
from reconciler.core.model import DesiredState, content_hash
from reconciler.desired.yaml_source import YAML_SUFFIXES, load_desired_files
from reconciler.desired.yamlread import MAX_BYTES

__all__ = ["load_desired_s3", "list_versions", "s3_version", "version_ids_of", "split_uri"]

MAX_OBJECTS = 10_000
# a page holds up to 1,000 versions: bounds old versions and other files, not only YAML
MAX_PAGES = 1_000


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix/`` -> ``("bucket", "prefix/")`` (the prefix is a folder)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InvalidDesiredState([(SourceLocation(uri), "expected s3://bucket/prefix/")])
    prefix = parsed.path.lstrip("/")
    return parsed.netloc, (prefix if not prefix or prefix.endswith("/") else prefix + "/")


def s3_version(version_ids: Mapping[str, str]) -> str:
    """The desired-state version: a canonical hash over ``{key: VersionId}``."""
    return "s3-" + content_hash(dict(sorted(version_ids.items())), 24)


def version_ids_of(state: DesiredState) -> dict[str, str]:
    """The ``{key: VersionId}`` a loaded state came from (kept in each resource's source)."""
    out: dict[str, str] = {}
    for resource in state.resources:
        parsed = urlparse(resource.source_file or "")
        if parsed.scheme == "s3" and parsed.query.startswith("versionId="):
            out[parsed.path.lstrip("/")] = parsed.query.removeprefix("versionId=")
    return out


def _yaml_key(key: str, prefix: str) -> bool:
    rest = key[len(prefix):]
    # the prefix is a folder: its own files only, no dotfiles (editor backups, locks)
    return "/" not in rest and not rest.startswith(".") and rest.endswith(YAML_SUFFIXES)


def list_versions(uri: str, client: Any = None) -> dict[str, str]:
    """The latest version id of every YAML object directly under the prefix.

    Pages are fetched one at a time and the cap checked after each, so a huge prefix is refused
    after MAX_OBJECTS YAML objects, not after listing all of it."""
    bucket, prefix = split_uri(uri)
    s3 = client or _client()
    found: dict[str, str] = {}
    for page in _pages(uri, s3, bucket, prefix):
        for item in page.get("Versions", ()):
            if item.get("IsLatest") and _yaml_key(item["Key"], prefix):
                found[item["Key"]] = _version_of(item)
        if len(found) > MAX_OBJECTS:
            raise InvalidDesiredState([(SourceLocation(uri), f"over {MAX_OBJECTS} YAML objects")])
    return dict(sorted(found.items()))


def _pages(uri: str, s3: Any, bucket: str, prefix: str) -> Iterator[Mapping[str, Any]]:
    """list_object_versions pages, fetched lazily, each S3 call guarded; at most MAX_PAGES."""
    pages = _guarded(uri, lambda: iter(
        s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)))
    for index in range(MAX_PAGES + 1):
        page: Mapping[str, Any] | None = _guarded(uri, lambda: next(pages, None))
        if page is None:
            return
        if index == MAX_PAGES:
            raise InvalidDesiredState([(SourceLocation(uri), f"over {MAX_PAGES} pages of object "
                                        "versions under the prefix (old versions, other files)")])
        yield page


def _version_of(item: Mapping[str, Any]) -> str:
    vid = str(item.get("VersionId") or "null")
    # an unversioned bucket says "null" for everything: fall back to the content's ETag
    return vid if vid != "null" else "etag-" + str(item.get("ETag", "")).strip('"')


def load_desired_s3(
    uri: str,
    *,
    version_ids: Mapping[str, str] | None = None,
    allow_empty: bool = False,
    client: Any = None,
    now: datetime | None = None,
) -> DesiredState:
    """Load every ``*.yaml``/``*.yml`` object under the prefix, pinned to ``version_ids`` if given.

    Each resource's ``source_file`` is ``s3://bucket/key?versionId=...`` so errors, plans and
    audits name the exact object version; ``version`` is ``s3_version`` of the whole set.
    """
    bucket, _ = split_uri(uri)
    s3 = client or _client()
    versions = dict(version_ids) if version_ids is not None else list_versions(uri, s3)
    files = [(_source(bucket, key, vid), _read(s3, uri, bucket, key, vid))
             for key, vid in sorted(versions.items())]
    return load_desired_files(files, source_uri=uri, version=s3_version(versions), now=now,
                              allow_empty=allow_empty)


def _source(bucket: str, key: str, vid: str) -> str:
    return f"s3://{bucket}/{key}?versionId={vid}"


def _read(s3: Any, uri: str, bucket: str, key: str, vid: str) -> bytes:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": f"bytes=0-{MAX_BYTES}"}
    if not vid.startswith("etag-"):
        kwargs["VersionId"] = vid
    body: bytes = _guarded(f"{uri} {key}", lambda: s3.get_object(**kwargs)["Body"].read())
    return body


def _guarded(where: str, fn: Any) -> Any:
    """Run an S3 call: throttling/5xx stay TemporaryError, anything else rejects the source."""
    from reconciler.awserrors import Scrubber, translate

    try:
        return fn()
    except Exception as exc:  # translated below; no raw SDK error leaves this module
        error = translate(exc, "s3", Scrubber())
    if isinstance(error, TemporaryError):
        raise error from None
    raise InvalidDesiredState([(SourceLocation(where), str(error))]) from None


def _client() -> Any:
    import boto3  # type: ignore[import-untyped]  # lazily: only s3:// sources need it

    return boto3.client("s3")
