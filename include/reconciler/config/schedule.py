"""A target's ``schedule``: a 5-field cron expression, an interval like ``10m`` or a preset."""

from __future__ import annotations

import re

from croniter import croniter  # type: ignore[import-untyped]

__all__ = ["schedule_problem"]

_INTERVAL = re.compile(r"[1-9][0-9]*[smhd]")
_PRESETS = frozenset({"@hourly", "@daily", "@weekly", "@monthly", "@yearly"})
# (label, what croniter accepts in the field besides * , - / and the L # ? extensions)
_CRON_FIELDS: tuple[tuple[str, str], ...] = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day of week", "0-7 or sun-sat"),
)
_NUMERIC_RANGE = re.compile(r"(?<![\d/])(\d+)-(\d+)")


def schedule_problem(schedule: str) -> str | None:
    """Why ``schedule`` is not a 5-field cron, an interval like ``10m`` or a preset; else None."""
    text = schedule.strip()
    if _INTERVAL.fullmatch(text) or text in _PRESETS:
        return None
    fields = text.split()
    if len(fields) != 5:
        return (
            f"schedule {schedule!r} is neither a 5-field cron expression, "
            "an interval like '30s', '10m', '1h', '1d', nor one of " + ", ".join(sorted(_PRESETS))
        )
    return _cron_problem(fields)


def _cron_problem(fields: list[str]) -> str | None:
    """Each field alone first, so the message names the field; then the whole expression."""
    for index, (value, (label, allowed)) in enumerate(zip(fields, _CRON_FIELDS, strict=True)):
        probe = " ".join(value if i == index else "*" for i in range(len(fields)))
        why = _croniter_rejects(probe) or _backwards(value)
        if why:
            return f"cron {label} field {value!r} is invalid: {why} (allowed {allowed})"
    why = _croniter_rejects(" ".join(fields))
    return f"cron expression {' '.join(fields)!r} is invalid: {why}" if why else None


def _croniter_rejects(expression: str) -> str | None:
    try:
        croniter(expression)
    except ValueError as error:  # every CroniterError is one
        # croniter says "[61 * * * *] is not acceptable, out of range": keep the reason only
        echo = re.compile(r"\[?" + re.escape(expression) + r"\]?| in field \d+", re.IGNORECASE)
        detail = echo.sub("", str(error)).replace("out of bands", "out of range")
        detail = detail.strip(" ,").removeprefix("is not acceptable")
        return detail.strip(" ,").removeprefix("is ") or "not a number, name, range or step"
    return None


def _backwards(value: str) -> str | None:
    # croniter wraps a backwards range (50-10 is 50..59 and 0..10). Named ones are meant so
    # (fri-mon, nov-feb); numbers written backwards are a typo far more often.
    for low, high in _NUMERIC_RANGE.findall(value):
        if int(low) > int(high):
            return f"range {low}-{high} runs backwards"
    return None
