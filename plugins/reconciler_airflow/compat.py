"""Workarounds for Airflow bugs the DAGs hit, each active only on the releases that have it.

apache/airflow#73428: ``airflow dags test`` (``dag.test()``) exits 1 after a successful run of
any DAG with ``deadline=``. ``dag.test()`` builds its scheduler DAG by a serialize/deserialize
round trip in memory, so ``dag.deadline`` holds encoded alerts instead of the ``deadline_alert``
ids a DAG read from the database holds; on success ``DagRun.update_state`` passes each to
``DeadlineAlert.get_by_id`` and the UUID column cannot bind a dict. Only ``dag.test()`` is
patched, and only while it runs: the scheduler never calls it, so its deadline path is untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import airflow
from airflow.sdk import DAG
from packaging.version import Version

__all__ = ["DeadlineSafeDAG", "dag_class", "dag_test_deadline_bug",
           "serialized_deadlines_readable"]

# Reported on 3.3.1 and 3.3.2 (the pin); the fix, apache/airflow#73430, is not released yet.
# Drop this module when Airflow > 3.3.2 includes apache/airflow#73430.
_DAG_TEST_DEADLINE_BUG = ((3, 3, 0), (3, 3, 2))


def dag_test_deadline_bug(version: str = airflow.__version__) -> bool:
    """Whether this Airflow release has apache/airflow#73428."""
    low, high = _DAG_TEST_DEADLINE_BUG
    return low <= Version(version).release[:3] <= high


@contextlib.contextmanager
def serialized_deadlines_readable() -> Iterator[None]:
    """While open, ``DeadlineAlert.get_by_id`` also takes an encoded alert and returns the row
    the scheduler would have read for it (same fields, never saved); ids go to the original."""
    from airflow.models.deadline_alert import DeadlineAlert as AlertRow

    original = AlertRow.__dict__["get_by_id"]
    lookup = AlertRow.get_by_id

    def get_by_id(cls: type[AlertRow], alert: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(alert, dict):
            return _unsaved_row(cls, alert)
        return lookup(alert, *args, **kwargs)

    AlertRow.get_by_id = classmethod(get_by_id)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        AlertRow.get_by_id = original  # type: ignore[method-assign]


def _unsaved_row(cls: type[Any], encoded: dict[str, Any]) -> Any:
    """The fields ``SerializedDagModel`` stores for an alert (see its
    ``_create_deadline_alert_records``), taken from the encoded alert."""
    from airflow.serialization.definitions.deadline import DeadlineAlertFields as F
    from airflow.serialization.enums import Encoding

    data = encoded.get(Encoding.VAR, encoded)
    return cls(name=data.get(F.NAME), reference=data[F.REFERENCE], interval=data[F.INTERVAL],
               callback_def=data[F.CALLBACK])


class DeadlineSafeDAG(DAG):
    """A DAG whose ``test()`` survives its own deadline alerts (apache/airflow#73428).
    Serializes exactly like :class:`airflow.sdk.DAG`: the class is not part of the JSON."""

    def test(self, *args: Any, **kwargs: Any) -> Any:
        if not self.deadline:
            return super().test(*args, **kwargs)
        with serialized_deadlines_readable():
            return super().test(*args, **kwargs)


def dag_class(version: str = airflow.__version__) -> type[DAG]:
    """The DAG class to build with: plain ``DAG`` on a release without the bug."""
    return DeadlineSafeDAG if dag_test_deadline_bug(version) else DAG
