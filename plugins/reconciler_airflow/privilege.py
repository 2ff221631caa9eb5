"""Least privilege: who may reset a target's breaker, who may approve its plans.

A breaker reset overrides a safety stop, so it needs more than running the DAG: edit access to
the target's DAG **and** to its pool (the target's concurrency limit, an operator's resource:
role ``op`` and up under SimpleAuthManager, and Op under FAB). The dashboard's button and the
``reset_breaker`` run parameter ask the same question (:func:`may_reset_breaker`), so having
trigger rights (role ``user``) is not enough for either.

Approvals are restricted per target with ``airflow.approvers`` (users and roles); they become the
approval task's HITL ``assigned_users``, which Airflow's API enforces (403 for anyone else).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

    from reconciler.config import Approvers

__all__ = ["may_reset_breaker", "run_user", "reset_refusal", "assignees", "NOBODY"]

log = logging.getLogger(__name__)
# assigned when a target's approvers resolve to no user: Airflow then refuses every responder
# (an empty assignee list would let anyone with HITL access approve)
NOBODY = {"id": "reconciler:nobody", "name": "nobody (no approver resolved)"}


def may_reset_breaker(am: BaseAuthManager[Any], user: BaseUser, target: str) -> bool:
    """Edit access to the target's DAG and to its pool (see the module docstring)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails, PoolDetails

    from reconciler_airflow.factory import dag_id, pool_name

    return bool(am.is_authorized_dag(method="PUT", user=user,
                                     details=DagDetails(id=dag_id(target)))
                and am.is_authorized_pool(method="PUT", user=user,
                                          details=PoolDetails(name=pool_name(target))))


def _simple_users() -> list[Any] | None:
    """SimpleAuthManager's configured users, or None under another auth manager (whose users
    live in a database that task code may not read)."""
    from airflow.api_fastapi.app import get_auth_manager_cls
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    if not issubclass(get_auth_manager_cls(), SimpleAuthManager):
        return None
    return list(SimpleAuthManager.get_users())


def run_user(name: str) -> BaseUser | None:
    """The user a run was triggered by, as the auth manager knows them (None: unknown)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.configuration import conf

    users = _simple_users()
    if users is None:
        return None
    if conf.getboolean("core", "simple_auth_manager_all_admins"):
        return SimpleAuthManagerUser(username=name, role="admin")
    return next((u for u in users if u.get_name() == name), None)


def reset_refusal(target: str, user_name: str | None) -> str | None:
    """Why a run triggered by ``user_name`` may not reset the breaker, or None if it may."""
    from airflow.api_fastapi.app import create_auth_manager

    if not user_name:
        return "the run has no triggering user (scheduled or backfill runs never reset)"
    user = run_user(user_name)
    if user is None:
        return (f"user {user_name!r} is unknown to the auth manager as seen from a task "
                "(only SimpleAuthManager users can be checked here); reset from the dashboard "
                "or the CLI")
    if not may_reset_breaker(create_auth_manager(), user, target):
        return (f"user {user_name!r} may trigger runs but not reset the breaker (needs edit "
                "access to the DAG and to the target's pool: role op or admin)")
    return None


def assignees(approvers: Approvers | None, target: str) -> list[dict[str, str]] | None:
    """The approval task's ``assigned_users``: the named users plus every configured user of the
    named roles (SimpleAuthManager; another auth manager's roles cannot be listed at parse
    time, so only named users count there). None when the target restricts nothing."""
    if approvers is None:
        return None
    named = {u: {"id": u, "name": u} for u in approvers.users}
    if approvers.roles:
        users = _simple_users()
        if users is None:
            log.warning("target %s: approver roles %s cannot be resolved under this auth "
                        "manager; only the named users may approve", target, approvers.roles)
        for u in users or []:
            if (u.role or "").lower() in approvers.roles:
                named.setdefault(u.get_id(), {"id": u.get_id(), "name": u.get_name()})
    if not named:
        log.warning("target %s: no approver resolved: nobody can approve its plans", target)
        return [NOBODY]
    return sorted(named.values(), key=lambda u: u["id"])


def reset_actor(step: Any, dag_run: Any, wanted: bool) -> str | None:
    """The audited actor (``airflow:<user>``) when this run may reset the breaker; None when no
    reset was asked or it is refused (refusals are logged and audited; the cycle goes on with
    the breaker as it is)."""
    if not wanted:
        return None
    user = getattr(dag_run, "triggering_user_name", None)
    refusal = reset_refusal(step.name, user)
    actor = f"airflow:{user}" if user else "airflow"
    if refusal is None:
        return actor
    log.warning("reset_breaker refused for %s: %s; the breaker stays as it is", step.name,
                refusal)
    detail = {"via": "run_conf", "run_id": getattr(dag_run, "run_id", None), "reason": refusal}
    step.target.store.record_operator(step.name, actor, "breaker_reset_refused", detail,
                                      step.correlation_id)
    return None
