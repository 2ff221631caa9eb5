"""Reading the targets file: every problem located by file, line and field, ``${VAR}`` expanded,
each provider's options checked by its own model."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from reconciler.catalogue import kind_def
from reconciler.config.expand import expand_target
from reconciler.config.models import TARGET_NAME, ProviderConfig, TargetConfig, TargetsConfig
from reconciler.core.errors import InvalidConfig, SourceLocation
from reconciler.desired.yamlread import FieldPath, YamlDoc, dotted, read_yaml, validation_problems

__all__ = ["config_path", "load_config", "load_config_lenient", "locate_options",
           "resolve_desired"]

_Problem = tuple[str | None, SourceLocation, str]  # (target name or None for the file, where, what)



def config_path(explicit: str | None = None) -> Path:
    """The targets file: ``explicit``, else $RECONCILER_CONFIG, else the repo's default."""
    chosen = explicit or os.environ.get("RECONCILER_CONFIG")
    if chosen:
        return Path(chosen)
    return Path(__file__).parents[2] / "config" / "targets.yaml"


def resolve_desired(target: TargetConfig, config_path: str | Path) -> str:
    """The target's desired-state location: s3:// as is, relative paths from the config's folder."""
    if target.desired.startswith("s3://"):
        return target.desired
    path = Path(target.desired).expanduser()
    if not path.is_absolute():
        path = Path(config_path).resolve().parent / path
    return str(path.resolve())


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> TargetsConfig:
    """Load and validate the targets file; any problem raises InvalidConfig naming all of them."""
    config, problems = _load(Path(path), os.environ if env is None else env)
    if problems:
        raise InvalidConfig([(where, what) for _, where, what in problems])
    return config


def load_config_lenient(
    path: str | Path, env: Mapping[str, str] | None = None
) -> tuple[TargetsConfig, dict[str, str]]:
    """The valid targets, plus one error message per invalid target name.

    One bad target does not hide the others. A problem with the file as a whole (unreadable,
    syntax error, wrong layout) still raises InvalidConfig: there is nothing valid to return.
    """
    config, problems = _load(Path(path), os.environ if env is None else env)
    file_level = [(where, what) for name, where, what in problems if name is None]
    if file_level:
        raise InvalidConfig(file_level)
    errors: dict[str, list[str]] = {}
    for name, where, what in problems:
        errors.setdefault(str(name), []).append(f"{where}: {what}")
    valid = {name: t for name, t in config.targets.items() if name not in errors}
    lenient = TargetsConfig(targets=valid, path=config.path)
    return lenient, {name: "\n".join(lines) for name, lines in errors.items()}


def _load(path: Path, env: Mapping[str, str]) -> tuple[TargetsConfig, list[_Problem]]:
    path = path.resolve()
    doc = read_yaml(path)
    problems = [_located(doc, p.path, p.message, p.line) for p in doc.problems]
    targets: dict[str, TargetConfig] = {}
    for name, raw in _raw_targets(doc, problems).items():
        target = _target(doc, name, raw, env, problems)
        if target is not None:
            targets[name] = target
    return TargetsConfig(targets=targets, path=str(path)), problems


def locate_options(path: str | Path, target: str,
                   problems: list[tuple[SourceLocation, str]]) -> list[tuple[SourceLocation, str]]:
    """Problems a provider found in a target's ``provider.options`` (each located by its
    field under the options, e.g. ``accounts[1].role_arn``), at their lines of the targets
    file, named like every other config problem."""
    doc = read_yaml(Path(path).resolve())
    base: FieldPath = ("targets", target, "provider", "options")
    out = []
    for loc, message in problems:
        field = (*base, *_field_path(loc.field or ""))
        out.append((_located(doc, field, message)[1], message))
    return out


def _field_path(text: str) -> FieldPath:
    """``accounts[1].role_arn`` -> ``("accounts", 1, "role_arn")``."""
    parts: list[str | int] = []
    for piece in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        parts.append(int(piece[1:-1]) if piece.startswith("[") else piece)
    return tuple(parts)


def _located(doc: YamlDoc, path: FieldPath, message: str, line: int | None = None) -> _Problem:
    owner = str(path[1]) if len(path) >= 2 and path[0] == "targets" else None
    where = SourceLocation(doc.file, doc.line(path) if line is None else line, dotted(path) or None)
    return (owner, where, message)


def _raw_targets(doc: YamlDoc, problems: list[_Problem]) -> dict[str, Any]:
    top = doc.value
    if doc.problems and top is None:
        return {}
    if not isinstance(top, dict) or "targets" not in top:
        problems.append(_located(doc, (), "expected a mapping with a 'targets' key"))
        return {}
    for key in top:
        if key != "targets":
            problems.append(_located(doc, (str(key),), f"unknown top-level key {key!r}"))
    targets = top["targets"]
    if targets is None:
        return {}
    if not isinstance(targets, dict):
        problems.append(_located(doc, ("targets",), "'targets' must map target names to targets"))
        return {}
    return {str(name): raw for name, raw in targets.items()}


def _target(
    doc: YamlDoc, name: str, raw: Any, env: Mapping[str, str], problems: list[_Problem]
) -> TargetConfig | None:
    base: FieldPath = ("targets", name)
    before = len(problems)
    if TARGET_NAME.fullmatch(name) is None:
        message = f"target name {name!r} must be 1-50 of a-z 0-9 _, starting with a letter or digit"
        problems.append(_located(doc, base, message))
    if not isinstance(raw, dict):
        problems.append(_located(doc, base, "a target must be a mapping"))
        return None
    if "name" in raw:
        problems.append(_located(doc, (*base, "name"), "a target's name is its key; remove 'name'"))
    body, expand_problems = expand_target(raw, env)
    problems.extend(_located(doc, (*base, *path), msg) for path, msg in expand_problems)
    try:
        target = TargetConfig.model_validate({**body, "name": name})
    except ValidationError as exc:
        found = validation_problems(exc, base, {**body, "name": name})
        # The name was checked above, against the line of its key.
        problems.extend(_located(doc, p, m) for p, m in found if p != (*base, "name"))
        return None
    problems.extend(_located(doc, (*base, *p), m) for p, m in _target_problems(target))
    return target if len(problems) == before else None


def _target_problems(target: TargetConfig) -> list[tuple[FieldPath, str]]:
    """What the target's own model cannot see: its provider's options, and kinds it names."""
    found = [(("provider", "options", *p), m) for p, m in _option_problems(target.provider)]
    for kind, paths in target.policy.ignore_fields.items():
        known = kind_def(kind)
        if known is None:
            found.append((("policy", "ignore_fields", kind), f"unknown kind {kind!r}"))
            continue
        fields = known.spec_model.model_fields
        found.extend((("policy", "ignore_fields", kind, i), f"{path.split('.')[0]!r} is not a "
                      f"field of {kind} (its fields: {', '.join(sorted(fields))})")
                     for i, path in enumerate(paths) if path.split(".")[0] not in fields)
    return found


def _option_problems(provider: ProviderConfig) -> list[tuple[FieldPath, str]]:
    """The options checked by the provider's own model, so a bad option is an error with a file
    and a line here, never a crash or an unlocated error when the provider is built."""
    model: type[BaseModel]
    if provider.type == "aws":  # imported only for the targets that use them
        from reconciler.providers.aws.session import AwsOptions

        model = AwsOptions
    else:
        from reconciler.providers.simulated import SimOptions

        model = SimOptions
    try:
        model.model_validate(provider.options)
    except ValidationError as exc:
        return validation_problems(exc, (), provider.options)
    return []
