"""The main job on the embedded default: Airflow reconciling two demo targets — ``demo`` on the
simulated provider and ``aws_demo`` on the embedded AWS (moto's server on 127.0.0.1, no account
needed) — each drifted by hand, with a first cycle triggered for you to watch in the UI.
Ctrl-C stops everything it started.

    python scripts/demo.py [--once] [--port 8080]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAGS = ("reconcile__demo", "reconcile__aws_demo")
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import AirflowStack, free_port  # noqa: E402


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def fresh_state(home: Path) -> None:
    """Each demo starts from a clean history: the fleets are re-seeded and drifted the same way
    every time, and remembered history would soon read that as another controller fighting
    over those fields (and leave them alone, as it should for a real fight)."""
    if os.environ.get("RECONCILER_STORE_URL"):
        return  # someone else's store: never wipe it
    for path in home.glob("state.db*"):
        path.unlink()
    shutil.rmtree(home / "artifacts", ignore_errors=True)


def seed_demo_fleet() -> None:
    from reconciler.orchestration.runtime import load_target
    from reconciler.providers.simulated import seed_demo

    target = load_target("demo")
    seed_demo(target.provider, target.load_desired())


def drift_demo_fleet() -> None:
    from reconciler.orchestration.runtime import load_target
    from reconciler.providers.simulated import inject_drift

    target = load_target("demo")
    for line in inject_drift(target.provider, random.Random(7), 0.3):
        print(f"  drift: {line}")
    target.provider.delete("sim.Workload", "checkout")  # a critical workload is gone: pages
    print("  drift: sim.Workload/checkout: deleted (critical SLA: the cycle pages first)")


def start_embedded_aws() -> object:
    from reconciler.embedded import MotoProcess, endpoint_file, seed_aws_demo

    moto = MotoProcess()
    url = moto.start()
    path = endpoint_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(url + "\n")  # the aws_demo target reads its endpoint from here
    seed_aws_demo(url)
    print(f"== embedded AWS (moto's server) at {url}")
    return moto


def drift_aws_demo() -> None:
    from reconciler.embedded import endpoint_file, seed_aws_demo

    for line in seed_aws_demo(endpoint_file().read_text().strip()):
        print(f"  drift: {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="stop after the first cycle")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    home = Path(os.environ.setdefault("RECONCILER_HOME", str(ROOT / ".reconciler" / "demo")))
    home.mkdir(parents=True, exist_ok=True)
    fresh_state(home)
    seed_demo_fleet()
    moto = start_embedded_aws()
    port = args.port if port_free(args.port) else free_port()
    stack = AirflowStack(home / "airflow", port=port, parallelism=4, password="reconciler")
    print("== starting Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor)")
    stack.prepare()
    stack.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        stack.wait_healthy()
        for dag in DAGS:  # a new DAG's first scheduled run happens at once: let it finish
            stack.wait_dag(dag)
            stack.wait_idle(dag)
        print("== someone changes the fleets by hand")
        drift_demo_fleet()
        drift_aws_demo()
        runs = {dag: stack.trigger(dag) for dag in DAGS}
        print(f"\n   Airflow UI: {stack.url}   login: {stack.user} / {stack.password}")
        for dag, run in runs.items():
            print(f"   watch: {stack.url}/dags/{dag}/runs/{run}")
        print()
        states = {dag: stack.wait_run(dag, run, timeout_s=900) for dag, run in runs.items()}
        for dag, state in states.items():
            print(f"== first cycle of {dag}: {state}")
            subprocess.run([sys.executable, "-m", "reconciler", "history", "--target",
                            dag.removeprefix("reconcile__"), "--limit", "2"], check=False)
        if not args.once:
            print(f"\nAirflow keeps reconciling every 5 minutes: {stack.url} (Ctrl-C to stop)")
            while True:
                time.sleep(3600)
        return 0 if set(states.values()) == {"success"} else 1
    except KeyboardInterrupt:
        return 0
    finally:
        print("== stopping Airflow and the embedded AWS")
        stack.stop()
        moto.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
