"""The model's base: the frozen model, the literal types, resource keys, canonical JSON and
hashes."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Frozen", "Urgency", "URGENCY_RANK", "SlaTier", "Fidelity", "ActionType", "Risk",
    "ActionState", "OperationResult", "ResourceKey", "canonical_json", "content_hash",
]


Urgency = Literal["none", "low", "high", "critical"]
URGENCY_RANK: dict[str, int] = {"none": 0, "low": 1, "high": 2, "critical": 3}
SlaTier = Literal["critical", "standard", "best_effort"]
Fidelity = Literal["full", "degraded", "stale"]
ActionType = Literal["create", "update", "delete"]
Risk = Literal["low", "medium", "high"]
ActionState = Literal["pending", "running", "succeeded", "failed", "skipped"]
OperationResult = Literal["unchanged", "created", "updated", "deleted"]


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every hash we compute."""
    return _CANONICAL.encode(value)  # one shared encoder: json.dumps(**kw) builds one per call


def content_hash(value: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ResourceKey(Frozen):
    """Identity of a resource within a target: its kind and a name unique for that kind."""

    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> ResourceKey:
        kind, sep, name = text.partition("/")
        if not sep:
            raise ValueError(f"expected 'kind/name', got {text!r}")
        return cls(kind=kind, name=name)
