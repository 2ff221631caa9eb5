"""Calls Reconciler makes to URLs people configure (alert and event webhooks): which variables
may be expanded into them, which URLs are allowed, redirects, and how a URL appears in a log.

A config value like ``https://x/?k=${AIRFLOW__API_AUTH__JWT_SECRET}`` would send a secret out
if every environment variable expanded. So only ``RECONCILER_*`` variables and the names a
target lists under ``env`` expand. A webhook must be ``https`` (``http`` only to loopback),
a redirect to another host is refused, and logs show a URL without its query or credentials.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ALLOWED_PREFIX", "expand_allowed", "template_problems", "url_problem", "post", "shown"]

ALLOWED_PREFIX = "RECONCILER_"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def allowed(name: str, listed: Iterable[str] = ()) -> bool:
    return name.startswith(ALLOWED_PREFIX) or name in set(listed)


def expand_allowed(text: str, env: Mapping[str, str],
                   listed: Iterable[str] = ()) -> tuple[str, list[str]]:
    """``text`` with ``${VAR}`` replaced where VAR may expand and is set; the problems."""
    problems: list[str] = []
    names = set(listed)

    def substitute(match: re.Match[str]) -> str:
        var = match.group(1)
        if not allowed(var, names):
            problems.append(f"${{{var}}} may not be expanded: only {ALLOWED_PREFIX}* variables "
                            "and the names the target lists under `env` are")
            return match.group(0)
        if var not in env:
            problems.append(f"environment variable {var} is not set")
            return match.group(0)
        return env[var]

    return _VAR.sub(substitute, text), problems


def template_problems(template: str, listed: Iterable[str] = ()) -> list[str]:
    """Why a configured webhook (``${VAR}`` not yet expanded) can never be used: a variable
    that may not expand, or a scheme and host that are not allowed whatever the variables
    hold. Checked when the config is loaded, so ``validate`` says it, not the first alert."""
    names = set(listed)
    problems = [f"${{{var}}} may not be expanded: only {ALLOWED_PREFIX}* variables and the "
                "names the target lists under `env` are"
                for var in dict.fromkeys(_VAR.findall(template)) if not allowed(var, names)]
    scheme, sep, rest = template.partition("://")
    head = scheme + sep + re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "${" not in head:  # else the scheme or host is known only once expanded, when sent
        problem = url_problem(_VAR.sub("x", template))
        if problem:
            problems.append(problem)
    return problems


def url_problem(url: str) -> str | None:
    """Why ``url`` may not receive Reconciler's calls, or None."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and _loopback(parts.hostname or ""):
        return None
    if not parts.scheme or not parts.hostname:
        return "a webhook is a URL like https://host/path (https; http only to loopback)"
    return (f"webhook {shown(url)}: only https URLs (http only to 127.0.0.1, ::1 or localhost) "
            "receive alerts and events")


def _loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown(url: str) -> str:
    """A URL fit for a log: scheme, host, port and path; credentials and query left out."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?..." if parts.query else "")


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same scheme and host: a webhook cannot be bounced to
    another host with the payload (and any token in the URL)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        old, new = urlsplit(req.full_url), urlsplit(newurl)
        if (old.scheme, old.hostname, old.port) != (new.scheme, new.hostname, new.port):
            raise urllib.error.HTTPError(newurl, code, f"redirect to another host refused: "
                                         f"{shown(newurl)}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameHostRedirects)


def post(url: str, body: bytes, timeout_s: float,
         content_type: str = "application/json") -> int:
    """POST ``body`` to an allowed URL; the HTTP status. Raises ValueError for a URL that is not
    allowed, and urllib's errors as they come."""
    problem = url_problem(url)
    if problem:
        raise ValueError(problem)
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type})
    with _OPENER.open(request, timeout=timeout_s) as response:
        return int(response.status)
