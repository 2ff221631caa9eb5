"""Wiring for one target: config → desired state, provider, store, sinks; the real clock."""

from __future__ import annotations

import logging
import random
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reconciler.config import (
    TargetConfig,
    TargetsConfig,
    config_path,
    load_config,
    locate_options,
    resolve_desired,
)
from reconciler.core.errors import InvalidConfig, InvalidDesiredState, SourceLocation
from reconciler.core.gate import BasicGate
from reconciler.core.loop import CycleDeps, CycleRequest
from reconciler.core.model import DesiredState, Event, content_hash
from reconciler.core.ports import EventSink, Provider, SnapshotGate
from reconciler.desired import load_desired
from reconciler.kinds import rules_for, split_region
from reconciler.store import SqlStore, open_store

__all__ = [
    "SystemClock",
    "LogSink",
    "FanOutSink",
    "Target",
    "load_target",
    "build_provider",
    "new_correlation_id",
    "correlation_id_for_run",
]

log = logging.getLogger("reconciler")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class LogSink:
    """Events as structured log lines carrying target, correlation id and action id.

    Under Airflow (which configures structlog) they are structlog events with those as bound
    fields, so the task log shows them as keys; elsewhere (the CLI) stdlib records with the same
    fields as attributes, printed only if the caller configured logging.
    """

    def emit(self, event: Event) -> None:
        # not "target": Airflow's supervisor forwards task log fields as keyword arguments to
        # _log_to_target(target, ...), and a "target" field crashes the task (TypeError)
        fields = {"target_name": event.target, "correlation_id": event.correlation_id,
                  "action_id": event.action_id}
        detail = event.model_dump(mode="json")["detail"]
        structlog = sys.modules.get("structlog")  # imported (and configured) by Airflow
        if structlog is not None and structlog.is_configured():
            structlog.get_logger("reconciler").bind(**fields).info(event.type, detail=detail)
            return
        log.info("%s", event.type, extra={"event": event.model_dump(mode="json"), **fields})


class FanOutSink:
    def __init__(self, sinks: Iterable[EventSink]) -> None:
        self.sinks = list(sinks)

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink.emit(event)


def new_correlation_id(target: str) -> str:
    return f"{target}-{uuid.uuid4().hex[:16]}"


def correlation_id_for_run(target: str, run_id: str) -> str:
    """Stable per Airflow run: every task (and every retry) of one run shares it."""
    return f"{target}-{content_hash(run_id)}"


def build_provider(cfg: TargetConfig, config_file: Path | None = None) -> Provider:
    if cfg.provider.type == "simulated":
        from reconciler.providers.simulated import Faults, SimulatedProvider

        opts = dict(cfg.provider.options)
        state = str(opts.pop("state", Path(".reconciler") / f"{cfg.name}-sim.db"))
        faults = Faults(**opts.pop("faults", {}))
        Path(state).parent.mkdir(parents=True, exist_ok=True)
        return SimulatedProvider(state, faults=faults, **opts)
    if cfg.provider.type == "aws":
        from reconciler.desired.clear import clear_source
        from reconciler.providers.aws import aws_provider

        # container environment values are kept as digests; a new task definition reads them
        # from the desired source at the moment it is registered (reconciler.desired.clear)
        source = clear_source(resolve_desired(cfg, config_file)) if config_file else None
        try:
            return aws_provider(cfg.name, cfg.provider.options, clear_spec=source)
        except InvalidConfig as exc:  # options problems, at their lines of the config file
            if config_file is None:
                raise
            raise InvalidConfig(locate_options(config_file, cfg.name, exc.problems)) from None
    raise InvalidConfig(f"target {cfg.name}: provider type {cfg.provider.type!r} is not available")


def check_regions(desired: DesiredState, served: frozenset[str]) -> None:
    """A resource in a region (or account) the target does not serve would be created
    nowhere: reject it before any action (``kind@region`` names a further region of the first
    account, ``kind@<account>:<region>`` a further account's region; the first keeps the plain
    kind)."""
    problems = [
        (SourceLocation(r.source_file or desired.source_uri, r.source_line, "kind"),
         f"{r.key}: {split_region(r.key.kind)[1]!r} is not a further region or account of "
         "this target (provider.options.regions after the first, or <account id>:<region> of "
         "provider.options.accounts after the first; the first region's resources use the "
         "plain kind)")
        for r in desired.resources
        if split_region(r.key.kind)[1] is not None and r.key.kind not in served
    ]
    if problems:
        raise InvalidDesiredState(problems)


@dataclass
class Target:
    """A target's config with the adapters built for it."""

    config: TargetConfig
    config_file: Path
    provider: Provider
    store: SqlStore

    @property
    def name(self) -> str:
        return self.config.name

    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self.provider.kinds()))

    def load_desired(self) -> DesiredState:
        source = resolve_desired(self.config, self.config_file)
        desired = load_desired(source, allow_empty=self.config.policy.allow_empty_desired)
        check_regions(desired, frozenset(self.kinds()))
        return desired

    def request(self, desired: DesiredState, **overrides: object) -> CycleRequest:
        fields: dict[str, object] = {
            "target": self.name, "desired": desired, "policy": self.config.policy,
            "kinds": self.kinds(), "correlation_id": new_correlation_id(self.name),
        }
        fields.update(overrides)
        return CycleRequest(**fields)  # type: ignore[arg-type]

    def deps(self, events: EventSink, gate: SnapshotGate | None = None,
             seed: int | None = None) -> CycleDeps:
        return CycleDeps(provider=self.provider, store=self.store, events=events,
                         clock=SystemClock(), gate=gate or BasicGate(),
                         rules=rules_for(list(self.kinds())), rng=random.Random(seed))


def load_target(name: str, config: str | None = None, store_url: str | None = None) -> Target:
    path = config_path(config)
    cfg: TargetsConfig = load_config(path)
    if name not in cfg.targets:
        known = ", ".join(sorted(cfg.targets)) or "none"
        raise InvalidConfig(f"{path}: no target {name!r} (known: {known})")
    target_cfg = cfg.targets[name]
    return Target(target_cfg, path, build_provider(target_cfg, path), open_store(store_url))
