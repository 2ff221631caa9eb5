"""Integration tests: the wheel smoke test's time is printed at the end of the run (CI's log)."""

from __future__ import annotations

import sys
from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    module = sys.modules.get("tests.integration.test_install")
    times: dict[str, float] = getattr(module, "SMOKE_TIMES", {})
    if "total" not in times:
        return
    phases = ", ".join(f"{k} {v:.1f}" for k, v in times.items() if k != "total")
    terminalreporter.write_line(f"wheel smoke test: {times['total']:.1f} s ({phases})")
