"""An aws target's ``provider.options``: region(s), accounts and roles, endpoint, credentials,
retries, timeouts and rate limits, each checked with a message that names the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from reconciler.catalogue import ACCOUNT_PATTERN, REGION_PATTERN
from reconciler.core.errors import InvalidConfig, SourceLocation
from reconciler.providers.aws.pacing import LimitKey, RateValue

__all__ = ["AWS_KINDS", "AwsAccount", "AwsOptions", "OPTIONS_FILE", "parse_options"]

AWS_KINDS = frozenset({"ec2.Instance", "autoscaling.Group", "ecs.Cluster", "ecs.Service"})

OPTIONS_FILE = "aws provider options"  # the "file" of an options problem not yet located
# arn:<partition>:iam::<account>:role/<optional path/><name> (IAM's own character rules)
_ROLE_ARN = re.compile(r"arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):iam::([0-9]{12}):"
                       r"role/(?:[\x21-\x7e]{1,510}/)?([\w+=,.@-]{1,64})", re.ASCII)
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)


def _check_regions(regions: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if regions is None:
        return None
    if not regions:
        raise ValueError("name at least one region")
    bad = [r for r in regions if REGION_PATTERN.fullmatch(r) is None]
    if bad:
        raise ValueError(f"{', '.join(map(repr, bad))}: not a region name")
    twice = sorted({r for r in regions if regions.count(r) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} named twice")
    return regions


class AwsAccount(BaseModel):
    """One AWS account of a multi-account target (``options.accounts``).

    ``role_arn``: the role the target's own credentials assume to act in this account
    (refreshable STS credentials); without it the target's own credentials are used, and must
    be this account's (checked with ``sts:GetCallerIdentity`` before the first call).
    ``regions``: this account's regions (default: the target's ``regions`` or ``region``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    role_arn: str | None = None
    external_id: str | None = Field(default=None, repr=False)
    regions: tuple[str, ...] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _account_id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError("quote the account id: YAML reads an unquoted one as a number "
                             "and drops its leading zeros")
        if not isinstance(value, str) or ACCOUNT_PATTERN.fullmatch(value) is None:
            raise ValueError("an AWS account id is 12 digits, quoted")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        found = _ROLE_ARN.fullmatch(value)
        if found is None:
            raise ValueError(f"{value!r} is not an IAM role ARN "
                             "(arn:aws:iam::<12-digit account id>:role/<name>)")
        account = info.data.get("id")  # absent when the id itself was refused
        if account is not None and found.group(2) != account:
            raise ValueError(f"a role of account {found.group(2)}, not of this entry's id "
                             f"{account}")
        return value

    @field_validator("external_id")
    @classmethod
    def _external(cls, value: str | None) -> str | None:
        if value is not None and _EXTERNAL_ID.fullmatch(value) is None:
            raise ValueError("an external id is 2-1224 of letters, digits and +=,.@:/-")
        return value

    _regions_ok = field_validator("regions")(_check_regions)

    @model_validator(mode="after")
    def _external_id_with_a_role(self) -> AwsAccount:
        if self.external_id is not None and self.role_arn is None:
            raise ValueError("external_id is sent when assuming role_arn: set role_arn too")
        return self


class AwsOptions(BaseModel):
    """A target's ``provider.options`` for ``type: aws`` (secrets never shown in a repr)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str | None = None
    # several regions in one target (see regions.py); the first keeps the plain kind names
    regions: tuple[str, ...] | None = None
    # several accounts in one target (see regions.py): the first keeps the plain kind names
    accounts: tuple[AwsAccount, ...] | None = None
    role_session_name: str | None = None  # default reconciler-<target> (shown in CloudTrail)
    endpoint_url: str | None = Field(default=None, repr=False)  # may carry user:password@
    endpoint_file: str | None = None  # the embedded emulator writes its URL here
    emulator: bool = False  # fake static credentials unless others are given
    aws_conn_id: str | None = None  # under Airflow: credentials from this connection
    profile: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    max_attempts: int = Field(default=3, ge=1, le=10)  # botocore's standard mode, reads only
    page_attempts: int = Field(default=3, ge=1, le=10)  # ours, per listing page
    connect_timeout_s: float = Field(default=5.0, gt=0, le=60)
    read_timeout_s: float = Field(default=30.0, gt=0, le=300)
    page_size: int = Field(default=1000, ge=5, le=1000)
    wait_timeout_s: float = Field(default=300.0, ge=0, le=3600)  # stop -> modify -> start
    wait_interval_s: float = Field(default=2.0, ge=0, le=60)
    max_pool_connections: int = Field(default=16, ge=1, le=256)
    kinds: tuple[str, ...] | None = None
    # Client-side pacing: "service" or "service.Operation" -> calls per second, or
    # {rate, burst}; overlays the EC2 defaults (applied against AWS only, not an emulator);
    # a rate of 0 removes a limit. See pacing.py.
    rate_limits: dict[LimitKey, RateValue] | None = None
    pacing_max_wait_s: float = Field(default=30.0, ge=0, le=3600)  # longer: TemporaryError

    @field_validator("region")
    @classmethod
    def _valid_region(cls, region: str | None) -> str | None:
        if region is not None and REGION_PATTERN.fullmatch(region) is None:
            raise ValueError(f"{region!r}: not a region name (like us-east-1)")
        return region

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = sorted(set(kinds or ()) - AWS_KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {', '.join(map(repr, unknown))}; the aws provider "
                             f"manages {', '.join(sorted(AWS_KINDS))}")
        return kinds

    _regions_ok = field_validator("regions")(_check_regions)

    @field_validator("accounts")
    @classmethod
    def _valid_accounts(cls, accounts: tuple[AwsAccount, ...] | None
                        ) -> tuple[AwsAccount, ...] | None:
        if accounts is None:
            return None
        if not accounts:
            raise ValueError("name at least one account, or leave accounts out")
        ids = [a.id for a in accounts]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"account {', '.join(twice)} named twice")
        return accounts

    @field_validator("role_session_name")
    @classmethod
    def _session_name(cls, value: str | None) -> str | None:
        if value is not None and _SESSION_NAME.fullmatch(value) is None:
            raise ValueError("a role session name is 2-64 of letters, digits and +=,.@-")
        return value

    @model_validator(mode="after")
    def _region_or_regions(self) -> AwsOptions:
        if self.regions is not None and self.region is not None:
            raise ValueError("region and regions: set one, not both")
        return self


def parse_options(options: Mapping[str, Any] | AwsOptions | None) -> AwsOptions:
    if isinstance(options, AwsOptions):
        return options
    try:
        return AwsOptions.model_validate(dict(options or {}))
    except ValidationError as exc:
        # located under OPTIONS_FILE; the runtime puts them at the config file's lines
        raise InvalidConfig([
            (SourceLocation(OPTIONS_FILE, None, _dotted(e["loc"]) or None),
             _message(e["type"], e["msg"], e["loc"]))
            for e in exc.errors(include_url=False)]) from None


def _dotted(loc: tuple[int | str, ...]) -> str:
    """``("accounts", 1, "role_arn")`` -> ``accounts[1].role_arn``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(kind: str, message: str, loc: tuple[int | str, ...]) -> str:
    if kind == "extra_forbidden":
        return f"unknown field {str(loc[-1])!r}"
    if kind == "missing":
        return "field required"
    return message.removeprefix("Value error, ")
