"""Reconciler's metrics through Airflow's ``Stats``: whatever ``[metrics]`` configures for
Airflow's own metrics (StatsD, OpenTelemetry, Datadog) receives the cycle's too.

Installed (reconciler.output.metrics.use_backend) before a task opens its cycle. Task processes use
the Task SDK's ``Stats``, which the task runner initializes from ``[metrics]``; a process where
nothing initialized it (``dag.test()``) gets the same initialization here, once. One exception:
Airflow's StatsD logger needs the ``statsd`` package and silently drops every metric without
it, so with ``statsd_on`` and no ``statsd`` installed the reconciler's own UDP client sends them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from reconciler.output.metrics import (
    MetricsBackend,
    StatsdClient,
    settings_from_airflow,
    use_backend,
)

__all__ = ["AirflowStats", "backend", "install"]

log = logging.getLogger(__name__)


class AirflowStats:
    """A ``MetricsBackend`` over an Airflow stats module (its ``incr``/``gauge``/``timing``);
    the target also goes as a tag, for backends that keep tags (OpenTelemetry attributes)."""

    def __init__(self, stats: Any) -> None:
        self.stats = stats

    def incr(self, name: str, count: int, target: str) -> None:
        self.stats.incr(name, count, tags={"target": target})

    def gauge(self, name: str, value: float, target: str) -> None:
        self.stats.gauge(name, value, tags={"target": target})

    def timing(self, name: str, ms: float, target: str) -> None:
        self.stats.timing(name, ms, tags={"target": target})


def _initialized(module: Any) -> bool:
    # Airflow keeps the configured factory in a module global; no public accessor exists.
    return getattr(module, "_factory", None) is not None


def _stats_module() -> Any:
    """The stats module this process already configured (the api-server's, the scheduler's or
    the task runner's), else the Task SDK's, initialized from ``[metrics]`` here."""
    for name in ("airflow.sdk._shared.observability.metrics.stats",
                 "airflow._shared.observability.metrics.stats"):
        module = sys.modules.get(name)
        if module is not None and _initialized(module):
            return module
    from airflow.sdk._shared.observability.metrics import stats
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability.metrics import stats_utils

    stats.initialize(factory=stats_utils.get_stats_factory(),
                     export_legacy_names=conf.getboolean("metrics", "legacy_names_on"))
    return stats


def _enabled(conf: Any, key: str) -> bool:
    return bool(conf.getboolean("metrics", key, fallback=False))


def backend() -> MetricsBackend | None:
    """The backend ``[metrics]`` asks for; None when every metrics option is off."""
    from airflow.sdk.configuration import conf

    statsd = _enabled(conf, "statsd_on") and not _enabled(conf, "statsd_datadog_enabled")
    if statsd:
        # StatsD: Reconciler's own UDP client with the same [metrics] settings (host, port,
        # prefix), in every process alike. Airflow's StatsD logger formats gauges differently
        # (3.0|g), is unset in processes nothing initialized, and drops everything without the
        # 'statsd' package; OpenTelemetry and Datadog go through Airflow's Stats below.
        settings = settings_from_airflow()
        return StatsdClient(settings) if settings else None
    if not any(_enabled(conf, k) for k in ("statsd_on", "statsd_datadog_enabled", "otel_on")):
        return None
    return AirflowStats(_stats_module())


def install() -> None:
    use_backend(backend)
