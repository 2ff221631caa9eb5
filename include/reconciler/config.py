"""Targets configuration: which fleets to reconcile, from where, how often and under what policy."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from croniter import croniter  # type: ignore[import-untyped]
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from reconciler.catalogue import kind_def
from reconciler.core.errors import InvalidConfig, SourceLocation
from reconciler.core.policy import Policy
from reconciler.desired.yamlread import FieldPath, YamlDoc, dotted, read_yaml, validation_problems
from reconciler.home import reconciler_home
from reconciler.outgoing import expand_allowed, template_problems

__all__ = [
    "Approvers",
    "ProviderConfig",
    "TargetConfig",
    "TargetsConfig",
    "TARGET_NAME",
    "config_path",
    "reconciler_home",
    "load_config",
    "load_config_lenient",
    "locate_options",
    "resolve_desired",
    "schedule_problem",
]

TARGET_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,49}")
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

_Problem = tuple[str | None, SourceLocation, str]  # (target name or None for the file, where, what)
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
_WHOLE_VAR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
# provider options that hold a credential: never written in the targets file itself
_CREDENTIALS = {"aws": ("secret_access_key", "session_token")}


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


def config_path(explicit: str | None = None) -> Path:
    """The targets file: ``explicit``, else $RECONCILER_CONFIG, else the repo's default."""
    chosen = explicit or os.environ.get("RECONCILER_CONFIG")
    if chosen:
        return Path(chosen)
    return Path(__file__).parents[1] / "config" / "targets.yaml"


def resolve_desired(target: TargetConfig, config_path: str | Path) -> str:
    """The target's desired-state location: s3:// as is, relative paths from the config's folder."""
    if target.desired.startswith("s3://"):
        return target.desired
    path = Path(target.desired).expanduser()
    if not path.is_absolute():
        path = Path(config_path).resolve().parent / path
    return str(path.resolve())


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


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> TargetsConfig:
    """Load and validate the targets file; any problem raises InvalidConfig naming all of them."""
    config, problems = _load(Path(path), os.environ if env is None else env)
    if problems:
        raise InvalidConfig([(where, what) for _, where, what in problems])
    return config


def load_config_lenient(
    path: str | Path, env: Mapping[str, str] | None = None
) -> tuple[TargetsConfig, dict[str, str]]:
    """The valid targets, plus one error message per invalid target name.

    One bad target does not hide the others. A problem with the file as a whole (unreadable,
    syntax error, wrong layout) still raises InvalidConfig: there is nothing valid to return.
    """
    config, problems = _load(Path(path), os.environ if env is None else env)
    file_level = [(where, what) for name, where, what in problems if name is None]
    if file_level:
        raise InvalidConfig(file_level)
    errors: dict[str, list[str]] = {}
    for name, where, what in problems:
        errors.setdefault(str(name), []).append(f"{where}: {what}")
    valid = {name: t for name, t in config.targets.items() if name not in errors}
    lenient = TargetsConfig(targets=valid, path=config.path)
    return lenient, {name: "\n".join(lines) for name, lines in errors.items()}


def _load(path: Path, env: Mapping[str, str]) -> tuple[TargetsConfig, list[_Problem]]:
    path = path.resolve()
    doc = read_yaml(path)
    problems = [_located(doc, p.path, p.message, p.line) for p in doc.problems]
    targets: dict[str, TargetConfig] = {}
    for name, raw in _raw_targets(doc, problems).items():
        target = _target(doc, name, raw, env, problems)
        if target is not None:
            targets[name] = target
    return TargetsConfig(targets=targets, path=str(path)), problems


def locate_options(path: str | Path, target: str,
                   problems: list[tuple[SourceLocation, str]]) -> list[tuple[SourceLocation, str]]:
    """Problems a provider found in a target's ``provider.options`` (each located by its
    field under the options, e.g. ``accounts[1].role_arn``), at their lines of the targets
    file, named like every other config problem."""
    doc = read_yaml(Path(path).resolve())
    base: FieldPath = ("targets", target, "provider", "options")
    out = []
    for loc, message in problems:
        field = (*base, *_field_path(loc.field or ""))
        out.append((_located(doc, field, message)[1], message))
    return out


def _field_path(text: str) -> FieldPath:
    """``accounts[1].role_arn`` -> ``("accounts", 1, "role_arn")``."""
    parts: list[str | int] = []
    for piece in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        parts.append(int(piece[1:-1]) if piece.startswith("[") else piece)
    return tuple(parts)


def _located(doc: YamlDoc, path: FieldPath, message: str, line: int | None = None) -> _Problem:
    owner = str(path[1]) if len(path) >= 2 and path[0] == "targets" else None
    where = SourceLocation(doc.file, doc.line(path) if line is None else line, dotted(path) or None)
    return (owner, where, message)


def _raw_targets(doc: YamlDoc, problems: list[_Problem]) -> dict[str, Any]:
    top = doc.value
    if doc.problems and top is None:
        return {}
    if not isinstance(top, dict) or "targets" not in top:
        problems.append(_located(doc, (), "expected a mapping with a 'targets' key"))
        return {}
    for key in top:
        if key != "targets":
            problems.append(_located(doc, (str(key),), f"unknown top-level key {key!r}"))
    targets = top["targets"]
    if targets is None:
        return {}
    if not isinstance(targets, dict):
        problems.append(_located(doc, ("targets",), "'targets' must map target names to targets"))
        return {}
    return {str(name): raw for name, raw in targets.items()}


def _target(
    doc: YamlDoc, name: str, raw: Any, env: Mapping[str, str], problems: list[_Problem]
) -> TargetConfig | None:
    base: FieldPath = ("targets", name)
    before = len(problems)
    if TARGET_NAME.fullmatch(name) is None:
        message = f"target name {name!r} must be 1-50 of a-z 0-9 _, starting with a letter or digit"
        problems.append(_located(doc, base, message))
    if not isinstance(raw, dict):
        problems.append(_located(doc, base, "a target must be a mapping"))
        return None
    if "name" in raw:
        problems.append(_located(doc, (*base, "name"), "a target's name is its key; remove 'name'"))
    body, expand_problems = _expand_target(raw, env)
    problems.extend(_located(doc, (*base, *path), msg) for path, msg in expand_problems)
    try:
        target = TargetConfig.model_validate({**body, "name": name})
    except ValidationError as exc:
        found = validation_problems(exc, base, {**body, "name": name})
        # The name was checked above, against the line of its key.
        problems.extend(_located(doc, p, m) for p, m in found if p != (*base, "name"))
        return None
    problems.extend(_located(doc, (*base, *p), m) for p, m in _target_problems(target))
    return target if len(problems) == before else None


def _target_problems(target: TargetConfig) -> list[tuple[FieldPath, str]]:
    """What the target's own model cannot see: its provider's options, and kinds it names."""
    found = [(("provider", "options", *p), m) for p, m in _option_problems(target.provider)]
    for kind, paths in target.policy.ignore_fields.items():
        known = kind_def(kind)
        if known is None:
            found.append((("policy", "ignore_fields", kind), f"unknown kind {kind!r}"))
            continue
        fields = known.spec_model.model_fields
        found.extend((("policy", "ignore_fields", kind, i), f"{path.split('.')[0]!r} is not a "
                      f"field of {kind} (its fields: {', '.join(sorted(fields))})")
                     for i, path in enumerate(paths) if path.split(".")[0] not in fields)
    return found


def _option_problems(provider: ProviderConfig) -> list[tuple[FieldPath, str]]:
    """The options checked by the provider's own model, so a bad option is an error with a file
    and a line here, never a crash or an unlocated error when the provider is built."""
    model: type[BaseModel]
    if provider.type == "aws":  # imported only for the targets that use them
        from reconciler.providers.aws.session import AwsOptions

        model = AwsOptions
    else:
        from reconciler.providers.simulated import SimOptions

        model = SimOptions
    try:
        model.model_validate(provider.options)
    except ValidationError as exc:
        return validation_problems(exc, (), provider.options)
    return []


def _expand_target(
    raw: dict[Any, Any], env: Mapping[str, str]
) -> tuple[dict[Any, Any], list[tuple[FieldPath, str]]]:
    """Expand ``${VAR}`` in provider options and artifacts; report variables that are not set."""
    problems: list[tuple[FieldPath, str]] = []
    out = {k: v for k, v in raw.items() if k != "name"}
    listed = raw.get("env")
    names = tuple(str(n) for n in listed) if isinstance(listed, list) else ()
    provider = raw.get("provider")
    if isinstance(provider, dict) and "options" in provider:
        problems.extend(_clear_credentials(provider))
        options = _expand(provider["options"], ("provider", "options"), env, problems, names)
        out["provider"] = {**provider, "options": options}
    if "artifacts" in raw:
        out["artifacts"] = _expand(raw["artifacts"], ("artifacts",), env, problems, names)
    alerts = raw.get("alerts")
    webhook = alerts.get("webhook") if isinstance(alerts, dict) else None
    if isinstance(webhook, str) and webhook:  # expanded when sent; what can never work is said now
        problems.extend((("alerts", "webhook"), m) for m in template_problems(webhook, names))
    return out, problems


def _clear_credentials(provider: dict[Any, Any]) -> list[tuple[FieldPath, str]]:
    """A credential written in the targets file is readable by anyone who can read the file
    (and its history in git): it may only name a variable that holds it."""
    options = provider.get("options")
    keys = _CREDENTIALS.get(str(provider.get("type")), ())
    if not isinstance(options, dict):
        return []
    return [(("provider", "options", key), "a credential is never written in the targets file: "
             "write ${RECONCILER_...} (or a name listed under env), or use aws_conn_id, a "
             "profile or the standard AWS chain")
            for key in keys
            if isinstance(options.get(key), str) and not _WHOLE_VAR.fullmatch(options[key])]


def _expand(
    value: Any, path: FieldPath, env: Mapping[str, str], problems: list[tuple[FieldPath, str]],
    names: tuple[str, ...] = (),
) -> Any:
    """``${VAR}`` of ``RECONCILER_*`` and the target's ``env`` names only (reconciler.outgoing):
    a config value must never pull any other secret of the process into a URL or a path."""
    if isinstance(value, dict):
        return {k: _expand(v, (*path, str(k)), env, problems, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), env, problems, names) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    home = {"RECONCILER_HOME": str(reconciler_home(env))}
    expanded, found = expand_allowed(value, {**env, **home}, names)
    problems.extend((path, message) for message in found)
    return expanded
