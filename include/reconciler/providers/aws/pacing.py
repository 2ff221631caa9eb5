"""Client-side pacing of AWS calls: a token bucket per service or operation, with bounded waits.

Creating 2,000 instances as fast as ``max_parallel`` threads allow meets EC2's own token
buckets: most calls come back ``RequestLimitExceeded``, each is retried after a backoff, and
the retries are throttled in turn. Spending our tokens at the rate AWS refills its own bucket
turns that storm into a queue: the same wall time at best, without the refusals.

Why our own bucket and not botocore's ``adaptive`` retry mode (for reads too): adaptive only
slows down after throttles have happened, learns per client object (we keep several per
service), waits on the wall clock with no bound (a paced call could outlive the sense or
cycle deadline), cannot be driven by a fake clock in tests, and AWS documents it as
experimental and unsuited to shared processes. Reads keep botocore's ``standard`` mode: EC2's
read buckets (100, refill 20/s) are far above what paged listings spend, and no read gets a
default limit here; a key such as ``ec2.DescribeInstances`` can still set one.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from reconciler.awserrors import AwsTemporaryError

__all__ = ["RateLimit", "RateValue", "LimitKey", "EC2_DEFAULT_LIMITS", "TokenBucket", "Pacer",
           "effective_limits", "talks_to_aws", "PACING_CODE"]

PACING_CODE = "ClientRateLimit"  # the code of the error a refused (over-budget) wait raises
LimitKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+(\.[A-Za-z][A-Za-z0-9_]*)?$")]
_Key = tuple[str, str | None]  # (service, snake_case operation or None for the whole service)


class RateLimit(BaseModel):
    """``rate`` calls per second sustained, after a burst of up to ``burst`` calls at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: float = Field(ge=0.0, le=100_000.0)  # 0: no limit for this key
    burst: float = Field(default=1.0, ge=1.0, le=1_000_000.0)


RateValue = RateLimit | Annotated[float, Field(ge=0.0, le=100_000.0)]  # a bare rate: burst = 1 s


# AWS's request-rate buckets (per account and region) for the mutating calls the ec2.Instance
# kind makes: https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html
# (RunInstances and StartInstances 5 / 2 per s; TerminateInstances 100 / 5; CreateTags and
# DeleteTags 100 / 10; any other mutating call 50 / 5). RunInstances also spends a resource
# bucket of 1,000 instances refilled at 2 per s: the same sustained rate for one per call.
EC2_DEFAULT_LIMITS: dict[str, RateLimit] = {
    "ec2.RunInstances": RateLimit(rate=2, burst=5),
    "ec2.StartInstances": RateLimit(rate=2, burst=5),
    "ec2.TerminateInstances": RateLimit(rate=5, burst=100),
    "ec2.StopInstances": RateLimit(rate=5, burst=50),
    "ec2.ModifyInstanceAttribute": RateLimit(rate=5, burst=50),
    "ec2.CreateTags": RateLimit(rate=10, burst=100),
    "ec2.DeleteTags": RateLimit(rate=10, burst=100),
}


def talks_to_aws(endpoint_url: str | None, emulator: bool,
                 env: Mapping[str, str] | None = None) -> bool:
    """False for an emulator (an endpoint is set): AWS's account limits do not apply there."""
    env = os.environ if env is None else env
    redirected = any(k.startswith("AWS_ENDPOINT_URL") and v for k, v in env.items())
    return not (emulator or endpoint_url or redirected)


def effective_limits(configured: Mapping[str, RateValue] | None,
                     against_aws: bool) -> dict[_Key, RateLimit]:
    """The EC2 defaults (against AWS only) overlaid with the configured keys; rate 0 drops one."""
    limits: dict[_Key, RateLimit] = {}
    defaults = EC2_DEFAULT_LIMITS if against_aws else {}
    for key, value in [*defaults.items(), *(configured or {}).items()]:
        limit = value if isinstance(value, RateLimit) else RateLimit(rate=value,
                                                                     burst=max(1.0, value))
        if limit.rate > 0:
            limits[_parse_key(key)] = limit
        else:
            limits.pop(_parse_key(key), None)
    return limits


def _parse_key(key: str) -> _Key:
    service, _, operation = key.partition(".")
    return service.lower(), _snake(operation) if operation else None


def _snake(operation: str) -> str:
    """``RunInstances`` -> ``run_instances`` (boto3's method names); snake_case stays."""
    try:
        from botocore import xform_name  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - botocore ships with the aws extra
        return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()
    name: str = xform_name(operation)
    return name


class TokenBucket:
    """A token bucket whose balance may go negative: each taker reserves a slot in the queue
    (the wait it gets back), so concurrent callers are spaced out without busy polling."""

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.rate, self.burst = limit.rate, limit.burst
        self.tokens, self.stamp = limit.burst, now

    def reserve(self, now: float) -> float:
        self._refill(now)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def cancel(self) -> None:
        self.tokens += 1.0

    def drain(self, now: float) -> None:
        """AWS refused a call: its bucket is emptier than ours thinks, so start from empty."""
        self._refill(now)
        self.tokens = min(self.tokens, 0.0)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.stamp)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.stamp = max(self.stamp, now)


class Pacer:
    """Every call takes a token from its operation's bucket and its service's bucket (those
    that are configured) and waits for the later of the two; thread-safe, clock injected."""

    def __init__(self, limits: Mapping[_Key, RateLimit], *, monotonic: Callable[[], float],
                 sleep: Callable[[float], None]) -> None:
        self.monotonic, self.sleep = monotonic, sleep
        now = monotonic()
        self._buckets = {key: TokenBucket(limit, now) for key, limit in limits.items()}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._buckets)

    def wait(self, service: str, operation: str, budget_s: float) -> float:
        """Wait for this call's turn and return how long that was; a turn further away than
        ``budget_s`` takes no token and raises a TemporaryError whose delay is that wait."""
        buckets = self._matching(service, operation)
        if not buckets:
            return 0.0
        with self._lock:
            now = self.monotonic()
            wait = max(bucket.reserve(now) for bucket in buckets)
            if wait > budget_s:
                for bucket in buckets:
                    bucket.cancel()
                raise AwsTemporaryError(
                    f"{service}.{operation}: client-side rate limit: next turn in {wait:.1f}s, "
                    f"past this call's budget of {max(0.0, budget_s):.1f}s",
                    delay=math.ceil(wait * 10) / 10, code=PACING_CODE)
        if wait > 0:
            self.sleep(wait)
        return wait

    def throttled(self, service: str, operation: str) -> None:
        with self._lock:
            now = self.monotonic()
            for bucket in self._matching(service, operation):
                bucket.drain(now)

    def _matching(self, service: str, operation: str) -> list[TokenBucket]:
        found = (self._buckets.get((service, operation)), self._buckets.get((service, None)))
        return [bucket for bucket in found if bucket is not None]
