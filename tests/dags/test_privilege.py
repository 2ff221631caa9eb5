"""Least privilege: trigger rights do not reset a breaker; only a target's approvers approve.

dag.test() runs are triggered by the user ``dag_test``; these tests give that user a role through
SimpleAuthManager's users (``[core] simple_auth_manager_users``), with all-admins mode off.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from reconciler.orchestration import taskgraph as tg
from tests.dags import support

ROLES = "viewer_v:viewer,user_u:user,op_o:op,admin_a:admin"


@pytest.fixture
def roles(monkeypatch: pytest.MonkeyPatch):
    """SimpleAuthManager with real roles (the conftest runs everyone as admin)."""
    def set_users(users: str) -> None:
        monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", users)

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    set_users(ROLES)
    return set_users


@pytest.mark.parametrize(("user", "allowed"), [
    ("viewer_v", False), ("user_u", False), ("op_o", True), ("admin_a", True),
    ("stranger", False), (None, False)])
def test_only_op_and_admin_may_reset_a_breaker_from_a_run(roles, user, allowed):
    from reconciler_airflow.privilege import reset_refusal

    refusal = reset_refusal("sim", user)
    assert (refusal is None) == allowed, refusal


def test_approver_roles_resolve_to_the_configured_users(roles):
    from reconciler.config import Approvers
    from reconciler_airflow.privilege import NOBODY, assignees

    ids = [u["id"] for u in assignees(Approvers(users=("carol",), roles=("op", "admin")), "t")]
    assert ids == ["admin_a", "carol", "op_o"]
    assert assignees(Approvers(roles=("op",)), "t") == [{"id": "op_o", "name": "op_o"}]
    roles("viewer_v:viewer")
    assert assignees(Approvers(roles=("op",)), "t") == [NOBODY]  # never "anyone"
    assert assignees(None, "t") is None


def test_approvers_must_name_someone():
    from pydantic import ValidationError

    from reconciler.config import Approvers

    with pytest.raises(ValidationError, match="at least one user or role"):
        Approvers()
    with pytest.raises(ValidationError):
        Approvers(roles=("root",))


def _open_breaker(target: str) -> None:
    from reconciler.core.breaker import BreakerState

    support.store().save_breaker(BreakerState(target=target, state="open",
                                              consecutive_failures=3, reason="test"))


def _operator_rows(target: str, what: str, run_id: str | None = None) -> list[dict[str, Any]]:
    """The target's recent operator rows saying ``what`` (of one run's cycle, if given)."""
    from reconciler.orchestration.runtime import correlation_id_for_run

    cid = correlation_id_for_run(target, run_id) if run_id else None
    rows = support.store().audit_rows(target=target, kind="operator", limit=20,
                                      correlation_id=cid)
    return [r for r in rows if r["payload"]["what"] == what]


def test_a_run_triggered_by_a_user_role_does_not_reset_the_breaker(dagbag, roles):
    roles("dag_test:user")
    support.seed("sim").delete("sim.Node", "node-a2")  # drift the open breaker holds back
    _open_breaker("sim")
    resets = len(_operator_rows("sim", "breaker_reset"))
    try:
        dr, states = support.run(dagbag, "sim", {"reset_breaker": True})
        assert support.store().load_breaker("sim").state == "open"
        assert support.last_outcome("sim").status == "breaker_open"
        assert support.fleet("sim").get("sim.Node", "node-a2") is None
        assert len(_operator_rows("sim", "breaker_reset")) == resets
        refused = _operator_rows("sim", "breaker_reset_refused")[0]
        assert refused["actor"] == "airflow:dag_test"
        assert "not reset the breaker" in refused["payload"]["detail"]["reason"]
    finally:
        support.store().save_breaker(_closed("sim"))


def test_a_run_triggered_by_an_op_resets_the_breaker_audited_with_the_user(dagbag, roles):
    roles("dag_test:op")
    support.seed("sim").delete("sim.Node", "node-a2")
    _open_breaker("sim")
    try:
        dr, states = support.run(dagbag, "sim", {"reset_breaker": True})
        assert support.last_outcome("sim").status == "converged"
        assert support.fleet("sim").get("sim.Node", "node-a2") is not None
        assert support.store().load_breaker("sim").state != "open"
        assert _operator_rows("sim", "breaker_reset")[0]["actor"] == "airflow:dag_test"
    finally:
        support.store().save_breaker(_closed("sim"))


def _closed(target: str) -> Any:
    from reconciler.core.breaker import BreakerState

    return BreakerState(target=target)


def test_the_approval_task_is_assigned_to_the_targets_approvers(dagbag):
    approve = dagbag.dags["reconcile__guarded"].get_task(tg.approve_task(1))
    assert approve.assigned_users == [{"id": "alice", "name": "alice"}]
    assert not dagbag.dags["reconcile__gated"].get_task(tg.approve_task(1)).assigned_users


class _Responder(threading.Thread):
    """Answers the first pending approval through Airflow's REST API as each user in turn,
    keeping each answer's status code."""

    def __init__(self, users: list[tuple[str, str]], timeout_s: float = 120) -> None:
        super().__init__(daemon=True)
        self.users, self.timeout_s = users, timeout_s
        self.codes: dict[str, int] = {}

    def run(self) -> None:
        from airflow.api_fastapi.app import create_app, get_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from fastapi.testclient import TestClient

        client = TestClient(create_app())
        auth = {name: {"Authorization": "Bearer " + get_auth_manager().generate_jwt(
            SimpleAuthManagerUser(username=name, role=role))} for name, role in self.users}
        first = auth[self.users[0][0]]
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            listing = client.get("/api/v2/dags/~/dagRuns/~/hitlDetails", headers=first)
            # only a task parked for input (see support.Approver: an earlier answer is lost)
            pending = [i for i in listing.json().get("hitl_details", [])
                       if not i.get("response_received")
                       and i["task_instance"].get("state") == "awaiting_input"]
            if pending:
                ti = pending[0]["task_instance"]
                url = (f"/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/"
                       f"{ti['task_id']}/{ti['map_index']}/hitlDetails")
                for name, _ in self.users:
                    self.codes[name] = client.patch(url, json={"chosen_options": ["Approve"]},
                                                    headers=auth[name]).status_code
                return
            time.sleep(0.5)


def test_airflow_refuses_an_approval_by_a_non_assignee_and_takes_the_approvers(dagbag, roles):
    roles("alice:user,bob:admin")
    sim = support.seed("guarded")
    sim.put("sim.Node", "stray", {"pool": "default"})
    responder = _Responder([("bob", "admin"), ("alice", "user")])
    responder.start()
    dr, states = support.run(dagbag, "guarded")
    responder.join(5)
    assert responder.codes == {"bob": 403, "alice": 200}
    assert support.fleet("guarded").get("sim.Node", "stray") is None
    approved = _operator_rows("guarded", "plan_approved")[0]
    assert approved["actor"] == "airflow:alice"


def test_an_all_admins_approval_by_a_non_assignee_is_refused_by_the_task(dagbag):
    """With every user an admin Airflow lets anyone answer; the target's approvers still hold."""
    sim = support.seed("guarded")
    sim.put("sim.Node", "stray", {"pool": "default"})
    approver = support.Approver("Approve")
    approver.start()
    dr, states = support.run(dagbag, "guarded")
    approver.join(5)
    assert approver.answered and approver.error is None
    assert "success" not in {v for k, v in states.items() if k.startswith(tg.actuate_task(1))}
    assert support.last_outcome("guarded").status == "needs_approval"
    assert support.fleet("guarded").get("sim.Node", "stray") is not None
    assert _operator_rows("guarded", "approval_refused", dr.run_id)
    assert not _operator_rows("guarded", "plan_approved", dr.run_id)
