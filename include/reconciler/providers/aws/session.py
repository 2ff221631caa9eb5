"""boto3 sessions and clients for one target: credentials, region, endpoint, retries, timeouts."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from reconciler.awserrors import Scrubber
from reconciler.catalogue import REGION_PATTERN
from reconciler.core.errors import InvalidConfig
from reconciler.providers.aws.pacing import LimitKey, RateValue

__all__ = ["AWS_KINDS", "AwsOptions", "ClientFactory", "resolve_region", "resolve_endpoint",
           "EMULATOR_KEY"]

AWS_KINDS = frozenset({"ec2.Instance", "autoscaling.Group", "ecs.Cluster", "ecs.Service"})

EMULATOR_KEY = "testing"  # moto accepts any credentials; these are not secret
_TIMEOUT_STEPS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)


class AwsOptions(BaseModel):
    """A target's ``provider.options`` for ``type: aws`` (secrets never shown in a repr)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str | None = None
    # several regions in one target (see regions.py); the first keeps the plain kind names
    regions: tuple[str, ...] | None = None
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

    @field_validator("regions")
    @classmethod
    def _valid_regions(cls, regions: tuple[str, ...] | None) -> tuple[str, ...] | None:
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

    @model_validator(mode="after")
    def _region_or_regions(self) -> AwsOptions:
        if self.regions is not None and self.region is not None:
            raise ValueError("region and regions: set one, not both")
        return self


def resolve_region(options: AwsOptions, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return options.region or env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"


def resolve_endpoint(options: AwsOptions) -> str | None:
    """``endpoint_url``, else the URL in ``endpoint_file``; None: boto3 reads AWS_ENDPOINT_URL."""
    if options.endpoint_url:
        return options.endpoint_url
    if options.endpoint_file is None:
        return None
    path = Path(options.endpoint_file)
    try:
        url = path.read_text().strip()
    except OSError:
        url = ""
    if not url:
        raise InvalidConfig(
            f"no emulator endpoint in {path}: start the embedded AWS first "
            "(python -m reconciler.embedded serve)"
        )
    return url


def parse_options(options: Mapping[str, Any] | AwsOptions | None) -> AwsOptions:
    if isinstance(options, AwsOptions):
        return options
    try:
        return AwsOptions.model_validate(dict(options or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}"
                             for e in exc.errors())
        raise InvalidConfig(f"aws provider options: {problems}") from None


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _make_session(options: AwsOptions, region: str) -> Any:
    if options.aws_conn_id:
        # under Airflow only; imported here so nothing else ever imports airflow
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=options.aws_conn_id).get_session(region_name=region)
    import boto3  # type: ignore[import-untyped]

    key, secret = _secret(options.access_key_id), _secret(options.secret_access_key)
    if options.emulator and not (key or secret or os.environ.get("AWS_ACCESS_KEY_ID")):
        key = secret = EMULATOR_KEY
    if key or secret:
        return boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret,
                             aws_session_token=_secret(options.session_token),
                             region_name=region)
    return boto3.Session(profile_name=options.profile, region_name=region)


class ClientFactory:
    """Creates and caches boto3 clients (creation is not thread-safe; use is).

    Reads retry in botocore's ``standard`` mode (not ``adaptive``: see pacing.py, which paces
    every call on our own clock instead); mutating calls get ``max_attempts=1``: a
    retried create must first look the resource up (moto ignores ``ClientToken``), so every
    write retry goes through the provider's read-compare-write instead of botocore's loop.
    Read timeouts are bounded by the caller's deadline (rounded down to a few steps, so a
    handful of clients serve every deadline).
    """

    def __init__(self, options: AwsOptions, session: Any = None, scrub: Scrubber | None = None):
        self.options = options
        self.region = resolve_region(options)
        self.endpoint_url = resolve_endpoint(options)
        self._session = session if session is not None else _make_session(options, self.region)
        self._clients: dict[tuple[str, float, bool], Any] = {}
        self._lock = threading.Lock()
        self.scrub = scrub or Scrubber()
        self.scrub.add([self.endpoint_url and _userinfo(self.endpoint_url)])
        self.scrub.add(_secret(s) for s in (options.access_key_id, options.secret_access_key,
                                            options.session_token))
        self._creds_known = False

    def client(self, service: str, *, timeout_s: float | None = None,
               mutating: bool = False) -> Any:
        step = _timeout_step(min(self.options.read_timeout_s, timeout_s or 1e9))
        key = (service, step, mutating)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = self._clients[key] = self._new_client(service, step, mutating)
            return found

    def _new_client(self, service: str, read_timeout: float, mutating: bool) -> Any:
        from botocore.config import Config  # type: ignore[import-untyped]

        self._learn_secrets()
        config = Config(
            region_name=self.region,
            # total_max_attempts counts the first try ("max_attempts" would count retries)
            retries={"mode": "standard",
                     "total_max_attempts": 1 if mutating else self.options.max_attempts},
            connect_timeout=min(self.options.connect_timeout_s, read_timeout),
            read_timeout=read_timeout,
            max_pool_connections=self.options.max_pool_connections,
            user_agent_extra="reconciler",
        )
        kwargs: dict[str, Any] = {"config": config}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return self._session.client(service, **kwargs)

    def _learn_secrets(self) -> None:
        """Remember the resolved credentials so the scrubber can remove them from any text."""
        if self._creds_known:
            return
        self._creds_known = True
        creds = self._session.get_credentials()
        if creds is not None:
            frozen = creds.get_frozen_credentials()
            self.scrub.add([frozen.access_key, frozen.secret_key, frozen.token])

    def __repr__(self) -> str:
        endpoint = self.scrub(str(self.endpoint_url))
        return f"ClientFactory(region={self.region!r}, endpoint={endpoint!r})"


def _userinfo(url: str) -> str | None:
    rest = url.partition("://")[2]
    info, at, _ = rest.partition("@")
    return info if at and "/" not in info else None


def _timeout_step(seconds: float) -> float:
    fitting = [s for s in _TIMEOUT_STEPS if s <= seconds]
    return fitting[-1] if fitting else _TIMEOUT_STEPS[0]
