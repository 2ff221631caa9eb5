"""boto3 sessions and clients for one target: credentials, region, endpoint, retries, timeouts."""

from __future__ import annotations

import os
import re
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
    ValidationInfo,
    field_validator,
    model_validator,
)

from reconciler.awserrors import AwsPermanentError, Scrubber, translate
from reconciler.catalogue import ACCOUNT_PATTERN, REGION_PATTERN
from reconciler.core.errors import InvalidConfig, SourceLocation
from reconciler.providers.aws.pacing import LimitKey, RateValue

__all__ = ["AWS_KINDS", "AwsAccount", "AwsOptions", "ClientFactory", "Place", "places",
           "resolve_region", "resolve_endpoint", "EMULATOR_KEY", "OPTIONS_FILE"]

AWS_KINDS = frozenset({"ec2.Instance", "autoscaling.Group", "ecs.Cluster", "ecs.Service"})

EMULATOR_KEY = "testing"  # moto accepts any credentials; these are not secret
OPTIONS_FILE = "aws provider options"  # the "file" of an options problem not yet located
_TIMEOUT_STEPS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)
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


class Place:
    """Where one ``AwsProvider`` of a target works: an account (None: the credentials' own,
    as in a target without ``accounts``) and a region; ``scope`` is the suffix its kinds
    carry (``kind@scope``), None for the target's first place."""

    __slots__ = ("account", "region", "scope")

    def __init__(self, account: AwsAccount | None, region: str, scope: str | None) -> None:
        self.account, self.region, self.scope = account, region, scope

    def options(self, options: AwsOptions) -> AwsOptions:
        """``options`` narrowed to this place (one region, at most one account)."""
        accounts = None if self.account is None else (
            self.account.model_copy(update={"regions": None}),)
        return options.model_copy(update={"region": self.region, "regions": None,
                                          "accounts": accounts})

    def __repr__(self) -> str:
        account = self.account.id if self.account else "own"
        return f"Place({account}, {self.region}, scope={self.scope!r})"


def places(options: AwsOptions, env: Mapping[str, str] | None = None) -> list[Place]:
    """Every (account, region) of a target, the first keeping plain kinds.

    The first account's first region is plain (``ec2.Instance``), its further regions are
    ``kind@region`` (as without accounts); every region of a further account is
    ``kind@<account id>:<region>``, so a further account always names both.
    """
    default = options.regions or (resolve_region(options, env),)
    if not options.accounts:
        return [Place(None, region, None if i == 0 else region)
                for i, region in enumerate(default)]
    found: list[Place] = []
    for n, account in enumerate(options.accounts):
        for i, region in enumerate(account.regions or default):
            scope = (None if i == 0 else region) if n == 0 else f"{account.id}:{region}"
            found.append(Place(account, region, scope))
    return found


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

    def __init__(self, options: AwsOptions, session: Any = None, scrub: Scrubber | None = None,
                 *, session_name: str = "reconciler"):
        self.options = options
        self.region = resolve_region(options)
        self.endpoint_url = resolve_endpoint(options)
        accounts = options.accounts or ()
        if len(accounts) > 1:
            raise InvalidConfig("aws provider options: several accounts need aws_provider() "
                                "(MultiRegionAwsProvider), not one client factory")
        self.account: AwsAccount | None = accounts[0] if accounts else None
        base = session if session is not None else _make_session(options, self.region)
        self._clients: dict[tuple[str, float, bool], Any] = {}
        self._lock = threading.Lock()
        self.scrub = scrub or Scrubber()
        self.scrub.add([self.endpoint_url and _userinfo(self.endpoint_url)])
        self.scrub.add(_secret(s) for s in (options.access_key_id, options.secret_access_key,
                                            options.session_token))
        self._creds_known = False
        self._identity_error: AwsPermanentError | None = None
        self._identity_checked = self.account is None
        self._session = base
        if self.account is not None and self.account.role_arn is not None:
            # the assumed credentials' secrets are learnt as they are fetched (_assume)
            self._session = _assumed_session(base, self, self.account,
                                             options.role_session_name or session_name)
            self._creds_known = self._identity_checked = True

    def client(self, service: str, *, timeout_s: float | None = None,
               mutating: bool = False) -> Any:
        step = _timeout_step(min(self.options.read_timeout_s, timeout_s or 1e9))
        key = (service, step, mutating)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = self._clients[key] = self._new_client(service, step, mutating)
        self._check_identity()
        return found

    def _check_identity(self) -> None:
        """An account entry without a role is acted on with the target's own credentials:
        before their first call, make sure those are that account's, or every call of this
        place fails (a mislabelled account would list another account's resources as its
        own, and plan deletions from them)."""
        if self._identity_checked:
            if self._identity_error is not None:
                raise self._identity_error
            return
        assert self.account is not None
        with self._lock:
            if not self._identity_checked:
                sts = self._new_client("sts", self.options.read_timeout_s, False)
                try:
                    found = str(sts.get_caller_identity().get("Account", ""))
                except Exception as exc:  # a failure here is retried by the next call
                    raise translate(exc, "sts.get_caller_identity", self.scrub) from None
                if found != self.account.id:
                    self._identity_error = AwsPermanentError(
                        f"account {self.account.id}: the target's credentials are of account "
                        f"{found or '?'}; give this account a role_arn to assume, or fix its "
                        "id", code="AccountMismatch")
                self._identity_checked = True
        if self._identity_error is not None:
            raise self._identity_error

    def client_kwargs(self, read_timeout: float, mutating: bool) -> dict[str, Any]:
        """What every client of this factory is made with (config and endpoint)."""
        from botocore.config import Config  # type: ignore[import-untyped]

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
        return kwargs

    def _new_client(self, service: str, read_timeout: float, mutating: bool) -> Any:
        self._learn_secrets()
        return self._session.client(service, **self.client_kwargs(read_timeout, mutating))

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
        account = f"account={self.account.id!r}, " if self.account else ""
        return f"ClientFactory({account}region={self.region!r}, endpoint={endpoint!r})"


def _assumed_session(base: Any, factory: ClientFactory, account: AwsAccount,
                     session_name: str) -> Any:
    """A boto3 session whose credentials are ``account.role_arn`` assumed with ``base``'s.

    botocore's refreshable credentials: nothing is fetched until the first call; they are
    fetched again before they expire (under botocore's lock, once for all threads). Each
    fetch's secrets join the factory's scrubber; a failed fetch is the engine's error, named
    by the role, and fails the calls of this place only.
    """
    import boto3  # type: ignore[import-untyped]
    import botocore.session  # type: ignore[import-untyped]
    from botocore.credentials import DeferredRefreshableCredentials  # type: ignore[import-untyped]

    assert account.role_arn is not None
    role_arn = account.role_arn
    request: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": session_name}
    if account.external_id is not None:
        request["ExternalId"] = account.external_id

    def fetch() -> dict[str, str]:
        sts = base.client("sts", **factory.client_kwargs(factory.options.read_timeout_s, False))
        try:
            answer = sts.assume_role(**request)
        except Exception as exc:
            raise translate(exc, f"sts.assume_role {role_arn}", factory.scrub) from None
        creds = answer["Credentials"]
        factory.scrub.add([creds["AccessKeyId"], creds["SecretAccessKey"],
                           creds["SessionToken"]])
        assumed = str((answer.get("AssumedRoleUser") or {}).get("Arn", ""))
        if assumed.split(":")[4:5] != [account.id]:
            raise AwsPermanentError(f"sts.assume_role {role_arn}: got credentials of "
                                    f"{assumed or 'an unknown principal'}, not of account "
                                    f"{account.id}", code="AccountMismatch")
        expiry = creds["Expiration"]
        return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": expiry.isoformat() if hasattr(expiry, "isoformat") else expiry}

    core = botocore.session.Session()
    # the amazon provider's session factory sets refreshable credentials the same way
    core._credentials = DeferredRefreshableCredentials(refresh_using=fetch,
                                                       method="sts-assume-role")
    return boto3.Session(botocore_session=core, region_name=factory.region)


def _userinfo(url: str) -> str | None:
    rest = url.partition("://")[2]
    info, at, _ = rest.partition("@")
    return info if at and "/" not in info else None


def _timeout_step(seconds: float) -> float:
    fitting = [s for s in _TIMEOUT_STEPS if s <= seconds]
    return fitting[-1] if fitting else _TIMEOUT_STEPS[0]
