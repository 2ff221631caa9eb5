"""Airflow's own authentication and authorization for the dashboard (api-server only).

Every route needs an Airflow user (a Bearer JWT or the UI's session cookie): the app declares
``get_user`` as an app-wide dependency, so a route can never be public by omission. Each target
is authorized as its DAG ``reconcile__<target>`` through the configured auth manager: reading
needs GET on the DAG's runs, a breaker reset PUT on the DAG and on the target's pool
(``privilege.may_reset_breaker``, role op and up), a dry run POST on its runs (what
Airflow's own trigger endpoint needs). A cookie-authenticated POST must also come from this
origin (SameSite=Lax alone still lets a sibling port post a form).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlparse

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, get_user, requires_access_dag
from fastapi import Depends, HTTPException, Request, status

from reconciler_airflow.ui import data

__all__ = ["get_user", "Reader", "Resetter", "Trigger", "readable_targets"]


def _authorize(request: Request, user: BaseUser, target: str, method: str,
               entity: DagAccessEntity | None) -> None:
    # Airflow's own check (team lookup included), bound to the target's DAG id.
    requires_access_dag(method, entity, param_dag_id=data.dag_id(target))(  # type: ignore[arg-type]
        request, user)


def _known(target: str) -> None:
    if target not in data.target_names():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no target {target!r}")


def _same_origin(request: Request) -> None:
    """Refuse a cookie-authenticated POST whose Origin (or Referer) is another site or port."""
    if request.headers.get("authorization"):
        return  # a bearer token is not sent by the browser on its own: no CSRF
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")} - {None}
    if urlparse(source).netloc not in hosts:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-origin request refused")


def _reader(target: str, request: Request, user: GetUserDep) -> BaseUser:
    _authorize(request, user, target, "GET", DagAccessEntity.RUN)
    _known(target)
    return user


def _resetter(target: str, request: Request, user: GetUserDep) -> BaseUser:
    from airflow.api_fastapi.app import get_auth_manager

    from reconciler_airflow.privilege import may_reset_breaker

    _same_origin(request)
    _authorize(request, user, target, "PUT", None)
    # the same question the ``reset_breaker`` run parameter asks: DAG and pool edit access
    if not may_reset_breaker(get_auth_manager(), user, target):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"resetting {target!r}'s breaker needs edit access to its pool too")
    _known(target)
    return user


def _trigger(target: str, request: Request, user: GetUserDep) -> BaseUser:
    _same_origin(request)
    _authorize(request, user, target, "POST", DagAccessEntity.RUN)
    _known(target)
    return user


Reader = Annotated[BaseUser, Depends(_reader)]
Resetter = Annotated[BaseUser, Depends(_resetter)]
Trigger = Annotated[BaseUser, Depends(_trigger)]


def readable_targets(request: Request, user: BaseUser,
                     entity: DagAccessEntity = DagAccessEntity.RUN) -> list[str]:
    """The configured targets whose DAG this user may read (the others are left out)."""
    allowed = []
    for name in data.target_names():
        try:
            _authorize(request, user, name, "GET", entity)
        except HTTPException:
            continue
        allowed.append(name)
    return allowed
