"""Every AWS call goes through here: counted, translated to engine errors, pages retried."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from reconciler.awserrors import THROTTLING_CODES, AwsTemporaryError, translate
from reconciler.core.errors import ReconcilerError, TemporaryError
from reconciler.providers.aws.pacing import Pacer, effective_limits, talks_to_aws
from reconciler.providers.aws.session import ClientFactory

__all__ = ["AwsStats", "ListingLoad", "Caller", "Deadline", "MUTATING_PREFIXES", "is_mutating"]

MAX_PAGES = 10_000  # a listing never loops without a bound
MUTATING_PREFIXES = (
    "run_", "create_", "delete_", "update_", "modify_", "start_", "stop_", "terminate_",
    "register_", "deregister_", "put_", "tag_", "untag_", "set_", "attach_", "detach_",
)
_TOKENS = {"ecs": "nextToken"}  # the pagination token's name; "NextToken" elsewhere


def is_mutating(operation: str) -> bool:
    return operation.startswith(MUTATING_PREFIXES)


@dataclass
class ListingLoad:
    """The load one listing met, counted in the thread that lists it (``AwsStats.tally``)."""

    throttles: int = 0
    retries: int = 0
    pages: int = 0
    page_s: float = 0.0

    @property
    def page_latency_s(self) -> float:
        return self.page_s / self.pages if self.pages else 0.0


@dataclass
class AwsStats:
    """API calls by ``service.operation``; ``mutations`` counts only the calls that write.

    ``throttles`` counts the throttling errors this caller saw, by ``service.operation``
    (botocore's own retries of reads hide theirs: ``sdk_retries`` counts those retries);
    ``paced``/``paced_wait_s`` the calls the client-side rate limit held back and for how long.
    """

    calls: Counter[str] = field(default_factory=Counter)
    mutations: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    throttles: Counter[str] = field(default_factory=Counter)
    page_retries: int = 0
    sdk_retries: int = 0
    paced: int = 0
    paced_wait_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @contextmanager
    def tally(self) -> Iterator[ListingLoad]:
        """Count what this thread's calls meet (throttles, retries, page time) into one
        ``ListingLoad``: kinds are listed in parallel threads, each is told its own load."""
        load = ListingLoad()
        self._local.load = load
        try:
            yield load
        finally:
            self._local.load = None

    def _load(self) -> ListingLoad | None:
        found: ListingLoad | None = getattr(self._local, "load", None)
        return found

    def page_read(self, seconds: float) -> None:
        load = self._load()
        if load is not None:
            load.pages += 1
            load.page_s += seconds

    def retried_page(self) -> None:
        with self._lock:
            self.page_retries += 1
        load = self._load()
        if load is not None:
            load.retries += 1

    def count(self, name: str, mutating: bool) -> None:
        with self._lock:
            self.calls[name] += 1
            if mutating:
                self.mutations[name] += 1

    def failed(self, code: str, name: str = "") -> None:
        with self._lock:
            self.errors[code or "unknown"] += 1
            if code in THROTTLING_CODES:
                self.throttles[name] += 1
        load = self._load()
        if load is not None and code in THROTTLING_CODES:
            load.throttles += 1

    def waited(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self.paced += 1
                self.paced_wait_s += seconds

    def retried_by_sdk(self, result: dict[str, Any]) -> None:
        retries = int((result.get("ResponseMetadata") or {}).get("RetryAttempts") or 0)
        if retries:
            with self._lock:
                self.sdk_retries += retries
            load = self._load()
            if load is not None:
                load.retries += retries

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def mutating_calls(self) -> int:
        return sum(self.mutations.values())

    @property
    def total_throttles(self) -> int:
        return sum(self.throttles.values())

    def reset(self) -> None:
        with self._lock:
            for counter in (self.calls, self.mutations, self.errors, self.throttles):
                counter.clear()
            self.page_retries = self.sdk_retries = self.paced = 0
            self.paced_wait_s = 0.0


@dataclass(frozen=True)
class Deadline:
    """A point on the provider's monotonic clock after which no new call starts."""

    at: float
    clock: Callable[[], float]

    def left(self) -> float:
        return self.at - self.clock()

    @property
    def passed(self) -> bool:
        return self.left() <= 0


class Caller:
    """Calls boto3 for one target; raises only TemporaryError / PermanentError (scrubbed)."""

    def __init__(
        self,
        factory: ClientFactory,
        stats: AwsStats,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.factory = factory
        self.stats = stats
        self.sleep = sleep
        self.monotonic = monotonic
        self.scrub = factory.scrub
        self.options = factory.options
        limits = effective_limits(self.options.rate_limits,
                                  talks_to_aws(factory.endpoint_url, self.options.emulator))
        self.pacer = Pacer(limits, monotonic=monotonic, sleep=sleep)

    def deadline(self, timeout_s: float) -> Deadline:
        return Deadline(self.monotonic() + timeout_s, self.monotonic)

    def call(self, service: str, operation: str, /, *, timeout_s: float | None = None,
             **kwargs: Any) -> dict[str, Any]:
        """One call, paced; botocore retries reads itself, writes are never retried here."""
        mutating = is_mutating(operation)
        self._pace(service, operation, timeout_s)
        client = self.factory.client(service, timeout_s=timeout_s, mutating=mutating)
        self.stats.count(f"{service}.{operation}", mutating)
        try:
            result: dict[str, Any] = getattr(client, operation)(**kwargs)
        except Exception as exc:  # every failure is translated, none escapes raw
            raise self._translated(exc, service, operation) from None
        self.stats.retried_by_sdk(result)
        return result

    def pages(self, service: str, operation: str, deadline: Deadline, /, *,
              page_size: int | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Pages of a boto3 paginator; a failed page is retried with backoff, then raised."""
        from botocore.paginate import TokenEncoder  # type: ignore[import-untyped]

        token_key = _TOKENS.get(service, "NextToken")
        token: str | None = None
        for _ in range(MAX_PAGES):
            config: dict[str, Any] = {}
            if page_size:
                config["PageSize"] = page_size
            if token:
                config["StartingToken"] = TokenEncoder().encode({token_key: token})
            page = self._page(service, operation, deadline, kwargs, config)
            yield page
            token = page.get(token_key)
            if not token:
                return

    def read(self, service: str, operation: str, deadline: Deadline, /,
             **kwargs: Any) -> dict[str, Any]:
        """One read of a listing that is not paged, retried like a page."""
        def once(client: Any) -> dict[str, Any]:
            result: dict[str, Any] = getattr(client, operation)(**kwargs)
            return result

        return self._retried(service, operation, deadline, once)

    def _page(self, service: str, operation: str, deadline: Deadline, kwargs: dict[str, Any],
              config: dict[str, Any]) -> dict[str, Any]:
        def once(client: Any) -> dict[str, Any]:
            pager = client.get_paginator(operation).paginate(**kwargs, PaginationConfig=config)
            page: dict[str, Any] = next(iter(pager))
            return page

        return self._retried(service, operation, deadline, once)

    def _retried(self, service: str, operation: str, deadline: Deadline,
                 once: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """Our own backoff on top of botocore's, for reads only; bounded by attempts and time."""
        what = f"{service}.{operation}"
        attempts = self.options.page_attempts
        for attempt in range(1, attempts + 1):
            if deadline.passed:
                raise AwsTemporaryError(f"{what}: deadline reached before the read")
            self._pace(service, operation, deadline.left())
            client = self.factory.client(service, timeout_s=max(deadline.left(), 1.0))
            self.stats.count(what, False)
            started = self.monotonic()
            try:
                result = once(client)
            except Exception as exc:
                error = self._translated(exc, service, operation)
            else:
                self.stats.page_read(self.monotonic() - started)
                self.stats.retried_by_sdk(result)
                return result
            if not isinstance(error, TemporaryError) or attempt == attempts:
                raise error
            self.stats.retried_page()
            self.sleep(min(max(0.0, deadline.left()), _backoff(attempt, error.delay)))
        raise AwsTemporaryError(f"{what}: no attempts left")  # unreachable: loop raises

    def _pace(self, service: str, operation: str, budget_s: float | None) -> None:
        """Wait for this call's turn under the client-side rate limit, never past the call's
        own budget (its timeout or deadline) nor ``pacing_max_wait_s``."""
        if not self.pacer.enabled:
            return
        budget = self.options.pacing_max_wait_s
        if budget_s is not None:
            budget = min(budget, budget_s)
        self.stats.waited(self.pacer.wait(service, operation, budget))

    def _translated(self, exc: BaseException, service: str, operation: str) -> ReconcilerError:
        what = f"{service}.{operation}"
        error = translate(exc, what, self.scrub)
        code = getattr(error, "code", "")
        self.stats.failed(code, what)
        if code in THROTTLING_CODES:
            self.pacer.throttled(service, operation)
        return error


def _backoff(attempt: int, hint: float | None) -> float:
    return min(8.0, max(hint or 0.0, 0.25 * 2.0 ** (attempt - 1)))
