"""The apache/airflow#73428 workaround: active only on affected releases, only inside
``dag.test()``, and invisible to the scheduler (same serialized DAG, same alert lookups)."""

from __future__ import annotations

import uuid

import pytest

from reconciler_airflow import compat

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.parametrize("version", ["3.3.0", "3.3.1", "3.3.2", "3.3.2rc1"])
def test_the_guard_is_active_on_releases_with_the_bug(version):
    assert compat.dag_test_deadline_bug(version)
    assert compat.dag_class(version) is compat.DeadlineSafeDAG


@pytest.mark.parametrize("version", ["3.3.3", "3.3.3rc1", "3.4.0", "4.0.0", "3.2.2"])
def test_the_guard_is_inactive_on_other_releases(version):
    from airflow.sdk import DAG

    assert not compat.dag_test_deadline_bug(version)
    assert compat.dag_class(version) is DAG


def test_the_demo_dag_has_a_deadline_and_the_safe_test(dagbag):
    dag = dagbag.dags["reconcile__demo"]
    assert dag.deadline
    assert isinstance(dag, compat.DeadlineSafeDAG) == compat.dag_test_deadline_bug()


def test_the_scheduler_sees_the_same_serialized_dag(monkeypatch):
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    from reconciler.config import config_path, load_config
    from reconciler_airflow import factory

    cfg = load_config(config_path()).targets["demo"]
    monkeypatch.setattr(factory, "_DAG", compat.DeadlineSafeDAG)
    safe = DagSerialization.to_dict(factory.build_dag(cfg))
    monkeypatch.setattr(factory, "_DAG", DAG)
    plain = DagSerialization.to_dict(factory.build_dag(cfg))
    assert safe["dag"]["deadline"] and safe == plain


def test_an_encoded_alert_reads_as_the_row_the_scheduler_stores(airflow_db):
    from airflow.models.deadline_alert import DeadlineAlert as AlertRow
    from airflow.serialization.definitions.deadline import SerializedReferenceModels
    from airflow.serialization.encoders import encode_deadline_alert
    from sqlalchemy.exc import NoResultFound

    from reconciler.config import config_path, load_config
    from reconciler_airflow import factory

    alert = factory._deadline(load_config(config_path()).targets["demo"])
    encoded = encode_deadline_alert(alert)
    original = AlertRow.__dict__["get_by_id"]
    with compat.serialized_deadlines_readable():
        row = AlertRow.get_by_id(encoded)
        assert row.reference_class in SerializedReferenceModels.TYPES.DAGRUN
        assert (row.reference, row.interval, row.callback_def) == (
            encoded["reference"], encoded["interval"], encoded["callback"])
        with pytest.raises(NoResultFound):  # an id still goes to the database
            AlertRow.get_by_id(str(uuid.uuid4()))
    assert AlertRow.__dict__["get_by_id"] is original
