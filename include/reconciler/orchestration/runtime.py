"""Wiring for one target: config → desired state, provider, store, sinks; the real clock."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reconciler.catalogue import rules_for, split_region
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
from reconciler.core.model import DesiredState, content_hash
from reconciler.core.ports import EventSink, Provider, SnapshotGate
from reconciler.desired import load_desired
from reconciler.store import SqlStore, open_store

__all__ = [
    "SystemClock",
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


def new_correlation_id(target: str) -> str:
    return f"{target}-{uuid.uuid4().hex[:16]}"


def correlation_id_for_run(target: str, run_id: str) -> str:
    """Stable per Airflow run: every task (and every retry) of one run shares it."""
    return f"{target}-{content_hash(run_id)}"


def build_provider(cfg: TargetConfig, config_file: Path | None = None) -> Provider:
    if cfg.provider.type == "simulated":
        from reconciler.providers.simulated import SimOptions, SimulatedProvider

        opts = SimOptions.model_validate(cfg.provider.options)  # load_config checked them
        state = opts.state or str(Path(".reconciler") / f"{cfg.name}-sim.db")
        Path(state).parent.mkdir(parents=True, exist_ok=True)
        return SimulatedProvider(state, faults=opts.faults, page_size=opts.page_size,
                                 busy_timeout_s=opts.busy_timeout_s)
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


def check_kinds(desired: DesiredState, served: frozenset[str]) -> None:
    """A resource of a kind (or in a region or account) the target does not manage would never
    be created, and the cycle would say converged: reject it before any action (``kind@region``
    names a further region of the first account, ``kind@<account>:<region>`` a further
    account's region; the first keeps the plain kind)."""
    problems = [
        (SourceLocation(r.source_file or desired.source_uri, r.source_line, "kind"),
         _unserved(str(r.key), r.key.kind, served))
        for r in desired.resources if r.key.kind not in served
    ]
    if problems:
        raise InvalidDesiredState(problems)


def _unserved(key: str, kind: str, served: frozenset[str]) -> str:
    region = split_region(kind)[1]
    if region is not None:
        return (f"{key}: {region!r} is not a further region or account of this target "
                "(provider.options.regions after the first, or <account id>:<region> of "
                "provider.options.accounts after the first; the first region's resources use "
                "the plain kind)")
    return (f"{key}: this target does not manage {kind} (its provider serves "
            f"{', '.join(sorted(k for k in served if '@' not in k))}; see provider.options)")


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
        check_kinds(desired, frozenset(self.kinds()))
        return desired

    def scope(self, only: Iterable[str] | None, argument: str = "only_kinds"
              ) -> tuple[str, ...] | None:
        """The kinds a run is limited to (None: all). A kind this target does not manage is an
        error naming ``argument``: never an empty, "in sync" cycle."""
        if not only:
            return None
        chosen = tuple(dict.fromkeys(only))
        unknown = [k for k in chosen if k not in self.kinds()]
        if unknown:
            raise InvalidConfig([(SourceLocation(argument),
                                  f"target {self.name} has no kind {', '.join(unknown)} "
                                  f"(its kinds: {', '.join(self.kinds())})")])
        return chosen

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
                         clock=SystemClock(),
                         gate=gate or BasicGate(self.config.policy.allow_empty_desired),
                         rules=rules_for(list(self.kinds())), rng=random.Random(seed))


def load_target(name: str, config: str | None = None, store_url: str | None = None) -> Target:
    path = config_path(config)
    cfg: TargetsConfig = load_config(path)
    if name not in cfg.targets:
        known = ", ".join(sorted(cfg.targets)) or "none"
        raise InvalidConfig([(SourceLocation(str(path)), f"no target {name!r} (known: {known})")])
    target_cfg = cfg.targets[name]
    provider = build_provider(target_cfg, path)
    # only the default store (None: $RECONCILER_STORE_URL or the home db) makes its directory
    return Target(target_cfg, path, provider, open_store(store_url, create_dir=store_url is None))
