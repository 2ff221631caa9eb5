"""``${VAR}`` in a target's options and artifacts, and credentials never written in clear."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from reconciler.desired.yamlread import FieldPath
from reconciler.home import reconciler_home
from reconciler.outgoing import expand_allowed, template_problems

__all__ = ["expand_target"]

_WHOLE_VAR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
# provider options that hold a credential: never written in the targets file itself
_CREDENTIALS = {"aws": ("secret_access_key", "session_token")}


def expand_target(
    raw: dict[Any, Any], env: Mapping[str, str]
) -> tuple[dict[Any, Any], list[tuple[FieldPath, str]]]:
    """Expand ``${VAR}`` in provider options and artifacts; report variables that are not set."""
    problems: list[tuple[FieldPath, str]] = []
    out = {k: v for k, v in raw.items() if k != "name"}
    listed = raw.get("env")
    names = tuple(str(n) for n in listed) if isinstance(listed, list) else ()
    provider = raw.get("provider")
    if isinstance(provider, dict) and "options" in provider:
        problems.extend(_clear_credentials(provider))
        options = _expand(provider["options"], ("provider", "options"), env, problems, names)
        out["provider"] = {**provider, "options": options}
    if "artifacts" in raw:
        out["artifacts"] = _expand(raw["artifacts"], ("artifacts",), env, problems, names)
    alerts = raw.get("alerts")
    webhook = alerts.get("webhook") if isinstance(alerts, dict) else None
    if isinstance(webhook, str) and webhook:  # expanded when sent; what can never work is said now
        problems.extend((("alerts", "webhook"), m) for m in template_problems(webhook, names))
    return out, problems


def _clear_credentials(provider: dict[Any, Any]) -> list[tuple[FieldPath, str]]:
    """A credential written in the targets file is readable by anyone who can read the file
    (and its history in git): it may only name a variable that holds it."""
    options = provider.get("options")
    keys = _CREDENTIALS.get(str(provider.get("type")), ())
    if not isinstance(options, dict):
        return []
    return [(("provider", "options", key), "a credential is never written in the targets file: "
             "write ${RECONCILER_...} (or a name listed under env), or use aws_conn_id, a "
             "profile or the standard AWS chain")
            for key in keys
            if isinstance(options.get(key), str) and not _WHOLE_VAR.fullmatch(options[key])]


def _expand(
    value: Any, path: FieldPath, env: Mapping[str, str], problems: list[tuple[FieldPath, str]],
    names: tuple[str, ...] = (),
) -> Any:
    """``${VAR}`` of ``RECONCILER_*`` and the target's ``env`` names only (reconciler.outgoing):
    a config value must never pull any other secret of the process into a URL or a path."""
    if isinstance(value, dict):
        return {k: _expand(v, (*path, str(k)), env, problems, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), env, problems, names) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    home = {"RECONCILER_HOME": str(reconciler_home(env))}
    expanded, found = expand_allowed(value, {**env, **home}, names)
    problems.extend((path, message) for message in found)
    return expanded
