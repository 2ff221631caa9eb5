"""Cycle metrics, sent wherever Airflow's own ``[metrics]`` settings send Airflow's.

``Metrics`` names what a cycle reports and hands it to a ``MetricsBackend`` (a port). Under
Airflow the plugin installs a backend over Airflow's ``Stats`` (reconciler_airflow.stats), so
StatsD and OpenTelemetry alike receive them. Elsewhere (the CLI) the backend is ``StatsdClient``,
a tiny UDP client reading ``statsd_on``, ``statsd_host``, ``statsd_port`` and ``statsd_prefix``
from Airflow's configuration when Airflow is already loaded in this process, else from the same
``AIRFLOW__METRICS__*`` environment variables. Fire-and-forget, never raises, no Airflow import
here, so a metric can never fail or slow a cycle.

Names (after the prefix, ``<t>`` the target):

- ``reconciler.<t>.snapshot.completeness`` / ``.resources`` (gauges), ``.latency`` (timer, ms),
  ``.fidelity`` (0 full, 1 degraded, 2 stale), ``.throttles`` / ``.retries`` (gauges, summed
  over kinds)
- ``reconciler.<t>.cycle.degraded`` (0/1, gauge): the cycle's first snapshot was observed
  under load (core.fidelity), so it ran fewer actions at once and deleted nothing
- ``reconciler.<t>.drift.magnitude`` / ``.urgency`` (0 none, 1 low, 2 high, 3 critical) /
  ``.resources`` (gauges)
- ``reconciler.<t>.coverage.<kind>.managed`` / ``.unmanaged`` / ``.ignored`` / ``.fraction``
  (gauges): resources of the kind this target owns, those no target owns (never acted on),
  those ``policy.unmanaged_ignore`` hides, and managed / (managed + unmanaged)
- ``reconciler.<t>.actions.<create|update|delete>.<succeeded|failed>`` (counters);
  rollback actions as ``reconciler.<t>.rollbacks.<type>.<result>``
- ``reconciler.<t>.cycle.duration`` (timer, ms), ``reconciler.<t>.cycle.status.<status>``
- ``reconciler.<t>.breaker.open`` (0/1) and ``reconciler.<t>.breaker.failures`` (gauges)
- ``reconciler.<t>.events.<event type>`` (counters, one per event)
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from reconciler.core.breaker import BreakerState
from reconciler.core.model import URGENCY_RANK, Diff, Drift, Event, Outcome, Snapshot

__all__ = ["MetricsBackend", "StatsdSettings", "StatsdClient", "Metrics", "MetricsSink",
           "settings_from_airflow", "use_backend"]

log = logging.getLogger(__name__)
_TRUE = {"1", "t", "true", "y", "yes", "on"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class MetricsBackend(Protocol):
    """Where named metrics go. ``name`` is final but for the backend's own prefix; a backend
    never raises and never blocks on the network."""

    def incr(self, name: str, count: int, target: str) -> None: ...
    def gauge(self, name: str, value: float, target: str) -> None: ...
    def timing(self, name: str, ms: float, target: str) -> None: ...


BackendFactory = Callable[[], "MetricsBackend | None"]
_installed: list[BackendFactory] = []


def use_backend(factory: BackendFactory | None) -> None:
    """Make ``Metrics.from_settings()`` ask ``factory`` (None: back to StatsD from settings).
    The Airflow plugin installs Airflow's ``Stats`` this way before a task opens its cycle."""
    _installed[:] = [factory] if factory else []


@dataclass(frozen=True)
class StatsdSettings:
    host: str = "localhost"
    port: int = 8125
    prefix: str = "airflow"


def _conf_from_loaded_airflow() -> Any:
    """Airflow's conf object if this process already imported it (never import it here)."""
    for name in ("airflow.sdk.configuration", "airflow.configuration"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "conf", None) is not None:
            return module.conf
    return None


def settings_from_airflow() -> StatsdSettings | None:
    """Airflow's ``[metrics] statsd_*`` settings, or None when StatsD is off."""
    conf = _conf_from_loaded_airflow()
    try:
        if conf is not None:
            if not conf.getboolean("metrics", "statsd_on", fallback=False):
                return None
            return StatsdSettings(conf.get("metrics", "statsd_host", fallback="localhost"),
                                  conf.getint("metrics", "statsd_port", fallback=8125),
                                  conf.get("metrics", "statsd_prefix", fallback="airflow"))
    except Exception:  # a broken config must not stop a cycle; fall back to the environment
        log.warning("metrics: could not read Airflow's [metrics] settings", exc_info=True)
    env = os.environ
    if env.get("AIRFLOW__METRICS__STATSD_ON", "").strip().lower() not in _TRUE:
        return None
    return StatsdSettings(env.get("AIRFLOW__METRICS__STATSD_HOST", "localhost"),
                          int(env.get("AIRFLOW__METRICS__STATSD_PORT", "8125")),
                          env.get("AIRFLOW__METRICS__STATSD_PREFIX", "airflow"))


@lru_cache(maxsize=8)
def _socket(host: str, port: int) -> tuple[socket.socket, tuple[Any, ...]] | None:
    """One UDP socket per endpoint per process (resolved once)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        return sock, address
    except OSError:
        log.warning("metrics: cannot resolve StatsD endpoint %s:%s", host, port)
        return None


class StatsdClient:
    """A ``MetricsBackend`` writing StatsD lines over UDP (the CLI's, and the fallback)."""

    def __init__(self, settings: StatsdSettings) -> None:
        self.settings = settings

    def incr(self, name: str, count: int, target: str) -> None:
        self._send(name, f"{count}|c")

    def gauge(self, name: str, value: float, target: str) -> None:
        self._send(name, f"{_number(value)}|g")

    def timing(self, name: str, ms: float, target: str) -> None:
        self._send(name, f"{_number(ms)}|ms")

    def full_name(self, name: str) -> str:
        return _UNSAFE.sub("_", ".".join(p for p in (self.settings.prefix, name) if p))

    def _send(self, name: str, value: str) -> None:
        try:
            endpoint = _socket(self.settings.host, self.settings.port)
            if endpoint is not None:
                sock, address = endpoint
                sock.sendto(f"{self.full_name(name)}:{value}".encode(), address)
        except OSError:  # a full buffer or an unreachable agent: metrics are best effort
            pass


class Metrics:
    """What a cycle reports; a no-op without a backend. Every method swallows errors."""

    def __init__(self, backend: MetricsBackend | None) -> None:
        self.backend = backend

    @classmethod
    def from_settings(cls) -> Metrics:
        """The installed backend (Airflow's ``Stats`` in tasks), else StatsD from settings."""
        for factory in _installed:
            try:
                return cls(factory())
            except Exception:  # metrics must never stop a cycle
                log.warning("metrics: the installed backend failed; using StatsD", exc_info=True)
        settings = settings_from_airflow()
        return cls(StatsdClient(settings) if settings else None)

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    # -- what the pipeline reports ------------------------------------------------------------

    def snapshot(self, target: str, snap: Snapshot) -> None:
        self.gauge(target, "snapshot.completeness", snap.completeness)
        self.gauge(target, "snapshot.resources", len(snap.resources))
        self.timing(target, "snapshot.latency", snap.latency_s * 1000)
        self.gauge(target, "snapshot.fidelity", FIDELITY_RANK[snap.fidelity])
        self.gauge(target, "snapshot.throttles", sum(k.throttled for k in snap.kinds.values()))
        self.gauge(target, "snapshot.retries", sum(k.retries for k in snap.kinds.values()))

    def drift(self, target: str, drift: Drift) -> None:
        self.gauge(target, "drift.magnitude", drift.magnitude)
        self.gauge(target, "drift.urgency", URGENCY_RANK[drift.urgency])
        self.gauge(target, "drift.resources", drift.drifted)

    def coverage(self, target: str, diff: Diff) -> None:
        for kind, cov in diff.coverage.items():
            self.gauge(target, f"coverage.{kind}.managed", cov.managed)
            self.gauge(target, f"coverage.{kind}.unmanaged", cov.unmanaged)
            self.gauge(target, f"coverage.{kind}.ignored", cov.ignored)
            self.gauge(target, f"coverage.{kind}.fraction", round(cov.fraction, 6))

    def cycle(self, outcome: Outcome, breaker: BreakerState) -> None:
        seconds = (outcome.finished_at - outcome.started_at).total_seconds()
        self.timing(outcome.target, "cycle.duration", max(0.0, seconds) * 1000)
        self.incr(outcome.target, f"cycle.status.{outcome.status}")
        self.breaker(breaker)

    def breaker(self, state: BreakerState) -> None:
        self.gauge(state.target, "breaker.open", 1 if state.state == "open" else 0)
        self.gauge(state.target, "breaker.failures", state.consecutive_failures)

    def event(self, event: Event) -> None:
        self.incr(event.target, f"events.{event.type}")
        if event.type == "cycle_finished" and "fidelity" in event.detail:  # both drivers
            self.gauge(event.target, "cycle.degraded", 1 if event.detail.get("degraded") else 0)
        if event.type in ("action_completed", "action_failed") and event.action_id:
            kind, _, rest = event.action_id.partition(":")
            group = "rollbacks" if rest.endswith("#undo") else "actions"
            result = "succeeded" if event.type == "action_completed" else "failed"
            self.incr(event.target, f"{group}.{kind}.{result}")

    # -- to the backend ------------------------------------------------------------------------

    def incr(self, target: str, name: str, count: int = 1) -> None:
        self._send("incr", target, name, count)

    def gauge(self, target: str, name: str, value: float) -> None:
        self._send("gauge", target, name, value)

    def timing(self, target: str, name: str, ms: float) -> None:
        self._send("timing", target, name, ms)

    @staticmethod
    def name(target: str, name: str) -> str:
        """``reconciler.<target>.<name>`` in StatsD-safe characters (the backend prefixes it)."""
        return _UNSAFE.sub("_", f"reconciler.{target}.{name}")

    def _send(self, kind: str, target: str, name: str, value: float) -> None:
        if self.backend is None:
            return
        try:
            getattr(self.backend, kind)(self.name(target, name), value, target)
        except Exception:  # a backend bug costs a metric, never a cycle
            log.debug("metrics: %s %s dropped", kind, name, exc_info=True)


FIDELITY_RANK = {"full": 0, "degraded": 1, "stale": 2}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


class MetricsSink:
    """An EventSink that counts events and action results (the CLI and the pipeline share it)."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics.from_settings()

    def emit(self, event: Event) -> None:
        self.metrics.event(event)
