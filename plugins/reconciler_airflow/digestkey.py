"""The key of Reconciler's value digests from the Airflow Variable ``reconciler_digest_key``.

Registered (reconciler.digests) before a task opens its cycle, so every worker of a deployment
digests with one key without a file to share. ``$RECONCILER_DIGEST_KEY`` still comes first.
"""

from __future__ import annotations

__all__ = ["VARIABLE", "install"]

VARIABLE = "reconciler_digest_key"


def _from_variable() -> str | None:
    from airflow.sdk import Variable

    value = Variable.get(VARIABLE, default=None)
    return str(value) if value else None


def install() -> None:
    from reconciler.digests import register_key_source

    register_key_source(_from_variable)
