"""Errors typed by what the caller should do: retry, stop, or reject the input."""

from __future__ import annotations

__all__ = [
    "ReconcilerError",
    "TemporaryError",
    "PermanentError",
    "InvalidDesiredState",
    "InvalidConfig",
    "PlanRejected",
    "SourceLocation",
]


class ReconcilerError(Exception):
    """Base of every error the engine raises on purpose."""


class TemporaryError(ReconcilerError):
    """Retry later (throttling, 5xx, timeouts); ``delay`` hints at how long to wait."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.delay))


class PermanentError(ReconcilerError):
    """Retrying will not help: roll back and stop."""


class SourceLocation:
    """Where in an input file a problem is: file, 1-based line, dotted field path."""

    __slots__ = ("file", "line", "field")

    def __init__(self, file: str, line: int | None = None, field: str | None = None) -> None:
        self.file = file
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}" if self.field else where

    def __repr__(self) -> str:
        return f"SourceLocation({self.file!r}, {self.line!r}, {self.field!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SourceLocation) and (self.file, self.line, self.field) == (
            other.file,
            other.line,
            other.field,
        )

    def __hash__(self) -> int:
        return hash((self.file, self.line, self.field))


class _InputError(ReconcilerError, ValueError):
    """Bad input: carries every problem found, each with its location."""

    def __init__(self, problems: list[tuple[SourceLocation, str]] | str) -> None:
        if isinstance(problems, str):
            problems = [(SourceLocation("<input>"), problems)]
        self.problems = list(problems)
        super().__init__("\n".join(f"{loc}: {msg}" for loc, msg in self.problems))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.problems,))


class InvalidDesiredState(_InputError):
    """The desired state is malformed: reject it before any action."""


class InvalidConfig(_InputError):
    """The targets configuration is malformed."""


class PlanRejected(ReconcilerError):
    """A plan failed validation (dependency cycle, protected deletion, stale precondition)."""

    def __init__(self, reasons: list[str] | tuple[str, ...]) -> None:
        self.reasons = tuple(reasons)
        super().__init__("; ".join(self.reasons))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (list(self.reasons),))
