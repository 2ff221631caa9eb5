"""The REST helpers and the distributed bench's run check, without a cluster: every task
instance of a run is read past the API's 100-a-page cap, and a run that did not actuate the
whole plan (a skipped, unexpanded ``actuate`` with no dates) is refused by name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import AirflowStack  # noqa: E402

# by path: ``distributed`` is also the name of Dask's package
_spec = importlib.util.spec_from_file_location("bench_distributed",
                                               ROOT / "bench" / "distributed.py")
assert _spec and _spec.loader
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
NotAFullActuation, check_run = bench.NotAFullActuation, bench.check_run


def _ti(task_id: str, map_index: int = -1, state: str = "success",
        when: str | None = "2026-12-02T00:00:00Z") -> dict[str, Any]:
    return {"task_id": task_id, "map_index": map_index, "state": state, "try_number": 1,
            "queued_when": when, "start_date": when, "end_date": when}


def test_task_instances_reads_every_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tis = [_ti("pass_1.actuate", i) for i in range(237)]
    asked: list[str] = []

    def request(method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        asked.append(path)
        offset = int(path.split("offset=")[1].split("&")[0])
        return {"task_instances": tis[offset:offset + 100], "total_entries": len(tis)}

    stack = AirflowStack(tmp_path)
    monkeypatch.setattr(stack, "request", request)
    assert stack.task_instances("d", "r") == tis
    assert len(asked) == 3


def test_a_full_actuation_passes() -> None:
    check_run("success", [_ti("pass_1.actuate", i) for i in range(40)], 2000, 2000)


def test_a_run_whose_actuate_never_expanded_is_refused() -> None:
    # what Airflow leaves when a plan maps to zero batches: SKIPPED at map index -1, no dates
    skipped = {**_ti("pass_1.actuate", state="skipped", when=None)}
    with pytest.raises(NotAFullActuation) as refused:
        check_run("failed", [skipped, _ti("record", state="failed")], 0, 2000)
    assert "run failed" in str(refused.value)
    assert "pass_1.actuate[-1] skipped" in str(refused.value)
    assert "the fleet holds 0 of 2000" in str(refused.value)


def test_a_failed_batch_or_an_incomplete_fleet_is_refused() -> None:
    with pytest.raises(NotAFullActuation, match="not every pass_1.actuate batch"):
        check_run("success", [_ti("pass_1.actuate", 0), _ti("pass_1.actuate", 1, "failed")],
                  2000, 2000)
    with pytest.raises(NotAFullActuation, match="holds 1950 of 2000"):
        check_run("success", [_ti("pass_1.actuate", 0)], 1950, 2000)
