"""boto3 sessions and clients for one target: credentials, region, endpoint, retries, timeouts."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    SecretStr,
)

from reconciler.awserrors import AwsPermanentError, Scrubber, translate
from reconciler.core.errors import InvalidConfig
from reconciler.providers.aws.options import (
    AWS_KINDS,
    OPTIONS_FILE,
    AwsAccount,
    AwsOptions,
    parse_options,
)

__all__ = ["AWS_KINDS", "AwsAccount", "AwsOptions", "ClientFactory", "Place", "places",
           "resolve_region", "resolve_endpoint", "EMULATOR_KEY", "OPTIONS_FILE", "parse_options"]

EMULATOR_KEY = "testing"  # moto accepts any credentials; these are not secret
_TIMEOUT_STEPS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)


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
