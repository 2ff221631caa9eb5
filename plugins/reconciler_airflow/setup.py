"""Create what the DAGs need in Airflow from the targets config: one pool per target.

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

__all__ = ["pools_for", "main"]


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


if __name__ == "__main__":
    sys.exit(main())
