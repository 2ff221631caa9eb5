"""Targets configuration: which fleets to reconcile, from where, how often and under what policy."""


from reconciler.config.loading import (
    config_path,
    load_config,
    load_config_lenient,
    locate_options,
    resolve_desired,
)
from reconciler.config.models import (
    TARGET_NAME,
    AirflowOptions,
    AlertsConfig,
    Approvers,
    ProviderConfig,
    TargetConfig,
    TargetsConfig,
)
from reconciler.config.schedule import schedule_problem
from reconciler.home import reconciler_home

__all__ = [
    "AirflowOptions",
    "AlertsConfig",
    "Approvers",
    "ProviderConfig",
    "TargetConfig",
    "TargetsConfig",
    "TARGET_NAME",
    "config_path",
    "reconciler_home",
    "load_config",
    "load_config_lenient",
    "locate_options",
    "resolve_desired",
    "schedule_problem",
]
