"""Desired-state sources: a directory of YAML files or a versioned S3 prefix."""

from reconciler.core.graph import find_cycles
from reconciler.desired.yaml_source import (
    desired_version,
    load_desired,
    load_desired_dir,
    load_desired_files,
)
from reconciler.desired.yamlread import YamlDoc, YamlProblem, parse_yaml, read_yaml

__all__ = [
    "load_desired",
    "load_desired_dir",
    "load_desired_files",
    "desired_version",
    "find_cycles",
    "YamlDoc",
    "YamlProblem",
    "read_yaml",
    "parse_yaml",
]
