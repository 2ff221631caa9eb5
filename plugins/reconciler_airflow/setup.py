"""Create what the DAGs need in Airflow from the targets config: one pool per target, and the
AWS connection an ``aws`` target names (``aws_conn_id``) when it does not exist yet.

    python -m reconciler_airflow.setup [--config targets.yaml]

Pools cannot be declared by a DAG, and a task naming a missing pool waits forever, so set-up
runs this (``airflow pools import``) before the scheduler starts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from typing import Any

from reconciler.config import config_path, load_config_lenient

__all__ = ["pools_for", "connections_for", "main"]


def pools_for(path: str | None = None) -> dict[str, dict[str, Any]]:
    config, _ = load_config_lenient(config_path(path))
    return {
        f"reconciler__{name}": {
            "slots": cfg.policy.max_parallel,
            "description": f"Reconciler actuation for target {name} (policy.max_parallel)",
            "include_deferred": False,  # batches waiting for their wave hold no slot
        }
        for name, cfg in sorted(config.targets.items())
    }


def connections_for(path: str | None = None) -> dict[str, dict[str, Any]]:
    """AWS connections the targets name. Credentials are not written here: the connection uses
    the standard AWS chain of the workers unless an operator adds keys to it."""
    config, _ = load_config_lenient(config_path(path))
    out: dict[str, dict[str, Any]] = {}
    for cfg in config.targets.values():
        opts = cfg.provider.options
        if cfg.provider.type == "aws" and opts.get("aws_conn_id"):
            extra = {k: v for k, v in (("region_name", opts.get("region")),
                                       ("endpoint_url", opts.get("endpoint_url"))) if v}
            out[str(opts["aws_conn_id"])] = {"conn_type": "aws", "extra": json.dumps(extra)}
    return out


def _add_missing_connections(connections: dict[str, dict[str, Any]]) -> int:
    for conn_id, spec in connections.items():
        exists = subprocess.run([sys.executable, "-m", "airflow", "connections", "get", conn_id],
                                capture_output=True, text=True)
        if exists.returncode == 0:
            continue
        out = subprocess.run([sys.executable, "-m", "airflow", "connections", "add", conn_id,
                              "--conn-type", spec["conn_type"], "--conn-extra", spec["extra"]],
                             capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            return out.returncode
        print(f"connection {conn_id}: created ({spec['conn_type']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    pools = pools_for(args.config)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(pools, fh)
    out = subprocess.run([sys.executable, "-m", "airflow", "pools", "import", fh.name],
                         capture_output=True, text=True)
    listing = ", ".join(f"{name} ({pool['slots']} slots)" for name, pool in pools.items())
    print(f"pools: {listing}")
    if out.returncode:
        print(out.stderr[-2000:], file=sys.stderr)
        return out.returncode
    return _add_missing_connections(connections_for(args.config))


if __name__ == "__main__":
    sys.exit(main())
