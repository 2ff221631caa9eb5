"""The targets file's models: a target's provider, desired source, schedule, policy, alerts."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    field_validator,
    model_validator,
)

from reconciler.config.schedule import schedule_problem
from reconciler.core.policy import Policy

__all__ = [
    "TARGET_NAME",
    "AirflowOptions",
    "AlertsConfig",
    "Approvers",
    "ProviderConfig",
    "TargetConfig",
    "TargetsConfig",
]

TARGET_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,49}")

_Tag = Annotated[StrictStr, Field(min_length=1, max_length=64)]
_ConnId = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=250)]


def _env_name(name: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", name) is None:
        raise ValueError(f"{name!r} is not an environment variable name (A-Z a-z 0-9 _, not "
                         "starting with a digit)")
    return name


def _address(text: str) -> str:
    if re.fullmatch(r"[^@\s]{1,64}@[^@\s]{1,189}", text) is None:
        raise ValueError("not an email address (name@domain)")
    return text


_EnvName = Annotated[StrictStr, AfterValidator(_env_name)]
_Email = Annotated[StrictStr, AfterValidator(_address)]
# S3's bucket naming rules (general purpose buckets): 3-63 of a-z 0-9 . -, alphanumeric ends
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class ProviderConfig(BaseModel):
    """Which provider adapter serves a target, and its options (``${VAR}`` already expanded)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["simulated", "aws"]
    options: dict[str, Any] = Field(default_factory=dict)


class AlertsConfig(BaseModel):
    """Where a late cycle, a critical drift, a plan waiting for approval and the breaker's
    moves are announced: the webhook, and Airflow's notifiers through connections."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deadline: bool = True  # a DeadlineAlert at cycle_deadline_seconds after the run is queued
    webhook: StrictStr | None = Field(default=None, min_length=1)  # ${VAR} allowed
    slack_conn_id: _ConnId | None = None  # a Slack incoming-webhook connection
    pagerduty_conn_id: _ConnId | None = None  # a PagerDuty Events v2 connection
    apprise_conn_id: _ConnId | None = None  # an Apprise connection
    smtp_to: tuple[_Email, ...] = ()
    smtp_conn_id: _ConnId | None = None  # default: Airflow's [email] email_conn_id

    @property
    def channels(self) -> dict[str, Any]:
        """The notifier channels, JSON-safe (deadline callbacks take them as kwargs)."""
        return {"slack_conn_id": self.slack_conn_id, "pagerduty_conn_id": self.pagerduty_conn_id,
                "apprise_conn_id": self.apprise_conn_id, "smtp_to": list(self.smtp_to),
                "smtp_conn_id": self.smtp_conn_id}


_UserId = Annotated[StrictStr, Field(min_length=1, max_length=256, pattern=r"^\S+$")]


class Approvers(BaseModel):
    """Who may answer the target's plan approvals (Airflow HITL ``assigned_users``): these user
    ids, and every user holding one of these roles (resolved from SimpleAuthManager's users)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: tuple[_UserId, ...] = ()
    roles: tuple[Literal["viewer", "user", "op", "admin"], ...] = ()

    @model_validator(mode="after")
    def _someone(self) -> Approvers:
        if not self.users and not self.roles:
            raise ValueError("name at least one user or role (omit approvers to let anyone "
                             "with access to the DAG approve)")
        return self


class AirflowOptions(BaseModel):
    """How the target's DAG retries its tasks (Airflow's own retries, on top of per-action ones)
    and who may approve its plans (default: anyone who may answer the DAG's approvals)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    retries: int = Field(default=2, ge=2, le=10)
    retry_delay_seconds: float = Field(default=10.0, gt=0, le=3600)
    approvers: Approvers | None = None


class TargetConfig(BaseModel):
    """One reconciled fleet: provider, desired-state source, schedule, policy and artifacts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: StrictStr
    provider: ProviderConfig
    desired: StrictStr = Field(min_length=1)
    schedule: StrictStr | None = None
    policy: Policy = Field(default_factory=Policy)
    artifacts: StrictStr | None = Field(default=None, min_length=1)
    tags: tuple[_Tag, ...] = ()
    alerts: AlertsConfig = Field(default_factory=lambda: AlertsConfig())
    airflow: AirflowOptions = Field(default_factory=lambda: AirflowOptions())
    # environment variables besides RECONCILER_* that may expand into this target's config
    env: tuple[_EnvName, ...] = ()

    @field_validator("name")
    @classmethod
    def _name_is_an_airflow_id(cls, name: str) -> str:
        if TARGET_NAME.fullmatch(name) is None:
            raise ValueError("target names are 1-50 of a-z 0-9 _, starting with a letter or digit")
        return name

    @field_validator("desired")
    @classmethod
    def _desired_is_a_path_or_s3(cls, desired: str) -> str:
        if "://" in desired and not desired.startswith("s3://"):
            raise ValueError("desired must be a folder path or an s3://bucket/prefix/ URI")
        problem = _s3_problem(desired) if desired.startswith("s3://") else None
        if problem:
            raise ValueError(problem)
        return desired

    @field_validator("schedule")
    @classmethod
    def _schedule_is_valid(cls, schedule: str | None) -> str | None:
        problem = None if schedule is None else schedule_problem(schedule)
        if problem:
            raise ValueError(problem)
        return schedule


class TargetsConfig(BaseModel):
    """Every configured target, by name, and the file they came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    targets: dict[str, TargetConfig]
    path: str


def _s3_problem(uri: str) -> str | None:
    """Why an ``s3://`` desired location can name no versioned prefix, or None."""
    bucket, _, _prefix = uri.removeprefix("s3://").partition("/")
    if "?" in uri or "#" in uri:
        return ("an s3:// desired location is a bucket and a prefix only; pin a version with "
                "the desired_version run parameter, not in the URI")
    if _BUCKET.fullmatch(bucket) is None or ".." in bucket:
        return (f"bucket {bucket!r}: S3 bucket names are 3-63 of a-z 0-9 . -, starting and "
                "ending with a letter or digit")
    return None
