"""Folder artifacts: atomic JSON put/get by reference; names cannot escape the root."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.output.artifacts import FolderArtifacts, open_artifacts


def test_put_returns_a_reference_that_get_reads_back(tmp_path: Path):
    store = open_artifacts(str(tmp_path))
    ref = store.put("demo/c-1/plan.json", {"waves": [1, 2]})
    assert store.get(ref) == {"waves": [1, 2]}
    assert not list(tmp_path.rglob(".tmp-*"))


def test_names_cannot_escape_the_root(tmp_path: Path):
    store = FolderArtifacts(tmp_path / "root")
    ref = store.put("../../etc/x.json", [1])
    assert Path(ref).resolve().is_relative_to((tmp_path / "root").resolve())
    with pytest.raises(ValueError):
        store.put("../..", [1])
