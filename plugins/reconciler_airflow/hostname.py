"""``[core] hostname_callable`` for Celery workers sharing one host: the worker's node name.

Airflow records a task instance's ``hostname`` from this callable. Two ``airflow celery worker``
processes on one machine (``-H w1@%h``, ``-H w2@%h``) would both report the machine's FQDN;
this reports the Celery node name (``w1@host``) inside a Celery task, and the FQDN elsewhere
(scheduler, triggerer, api-server), so the grid and the REST API show which worker ran what.

    AIRFLOW__CORE__HOSTNAME_CALLABLE=reconciler_airflow.hostname.worker_hostname
"""

from __future__ import annotations

import os
import socket

__all__ = ["worker_hostname"]


def worker_hostname() -> str:
    """``$RECONCILER_WORKER_NAME``, else the running Celery task's node name, else the FQDN."""
    named = os.environ.get("RECONCILER_WORKER_NAME")
    if named:
        return named
    try:
        from celery import current_task
    except ImportError:  # not a Celery deployment
        return socket.getfqdn()
    request = getattr(current_task, "request", None) if current_task else None
    hostname = getattr(request, "hostname", None)
    return str(hostname) if hostname else socket.getfqdn()
