"""An S3 desired prefix is listed page by page and refused as soon as its YAML objects pass the
cap (or its pages pass theirs), without listing the rest of the prefix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.core.errors import InvalidDesiredState
from reconciler.desired import s3_source
from reconciler.desired.s3_source import MAX_OBJECTS, list_versions


class PagedBucket:
    """The slice of an S3 client that list_versions uses; counts the pages it hands out."""

    def __init__(self, pages: int, per_page: int = 1000, yaml: bool = True) -> None:
        self.pages, self.per_page, self.yaml, self.served = pages, per_page, yaml, 0

    def get_paginator(self, operation: str) -> PagedBucket:
        assert operation == "list_object_versions"
        return self

    def paginate(self, Bucket: str, Prefix: str) -> Iterator[dict[str, Any]]:  # noqa: N803
        for p in range(self.pages):
            self.served += 1
            suffix = "yaml" if self.yaml else "bin"
            yield {"Versions": [{"Key": f"{Prefix}f{p}-{i}.{suffix}", "VersionId": f"v{p}.{i}",
                                 "IsLatest": True} for i in range(self.per_page)]}


def test_listing_stops_at_the_first_page_past_the_cap() -> None:
    bucket = PagedBucket(pages=500)
    with pytest.raises(InvalidDesiredState, match=f"over {MAX_OBJECTS} YAML objects"):
        list_versions("s3://fleet/prod/", client=bucket)
    assert bucket.served == MAX_OBJECTS // 1000 + 1


def test_a_prefix_of_endless_other_files_is_refused_after_max_pages(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_source, "MAX_PAGES", 5)
    bucket = PagedBucket(pages=50, per_page=10, yaml=False)
    with pytest.raises(InvalidDesiredState, match="over 5 pages"):
        list_versions("s3://fleet/prod/", client=bucket)
    assert bucket.served == 6  # the one that shows there is more
    assert len(list_versions("s3://fleet/prod/", client=PagedBucket(pages=5))) == 5000


def test_a_prefix_under_the_caps_is_listed_whole() -> None:
    bucket = PagedBucket(pages=3, per_page=2)
    versions = list_versions("s3://fleet/prod/", client=bucket)
    assert bucket.served == 3 and len(versions) == 6
    assert versions["prod/f2-1.yaml"] == "v2.1"
