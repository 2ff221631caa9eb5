"""The embedded AWS: moto's server on 127.0.0.1, seeded with a drifted demo fleet.

``python -m reconciler.embedded demo`` starts it, seeds it, and runs ``reconcile plan``,
``apply`` and ``plan`` against the ``aws_demo`` target; ``serve`` keeps it running for the
``reconcile`` CLI (the target finds it through ``$RECONCILER_HOME/embedded-aws.url``) and
``seed`` (re)seeds a running one. No AWS account is needed and nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import logging
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.config import reconciler_home
from reconciler.core.model import DesiredState

__all__ = [
    "DEMO_TARGET",
    "DEMO_LAUNCH_TEMPLATE",
    "endpoint_file",
    "free_port",
    "EmbeddedAws",
    "MotoProcess",
    "seed_aws_demo",
    "converge",
    "main",
]

DEMO_TARGET = "aws_demo"
DEMO_LAUNCH_TEMPLATE = "aws-demo-nodes"
DEMO_DESIRED = Path(__file__).resolve().parents[1] / "desired" / "aws_demo"


def endpoint_file(home: Path | None = None) -> Path:
    """Where a running embedded AWS leaves its URL for the ``aws_demo`` target."""
    return (home or reconciler_home()) / "embedded-aws.url"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    """Poll moto's own API until it answers (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"moto did not answer at {url} within {timeout_s:g}s") from None
            time.sleep(0.1)


def reset(url: str) -> None:
    """Forget every resource (moto keeps nothing across resets or restarts)."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=30):
        pass


@dataclass
class EmbeddedAws:
    """moto's server in a thread of this process (the demo); ``url`` once started."""

    host: str = "127.0.0.1"
    port: int = 0
    url: str = ""
    _server: Any = field(default=None, repr=False)

    def start(self) -> str:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> EmbeddedAws:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class MotoProcess:
    """A real ``moto_server`` process on a loopback port (tests, benchmarks)."""

    host: str = "127.0.0.1"
    port: int = 0
    url: str = ""
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> str:
        port = self.port or free_port(self.host)
        exe = Path(sys.executable).with_name("moto_server")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
        self._proc = subprocess.Popen([*cmd, "-H", self.host, "-p", str(port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://{self.host}:{port}"
        wait_ready(self.url)
        return self.url

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None

    def __enter__(self) -> MotoProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _provider(url: str, target: str, desired_source: str | None = None) -> Any:
    from reconciler.desired.clear import clear_source
    from reconciler.providers.aws import AwsProvider

    source = clear_source(desired_source) if desired_source else None
    return AwsProvider(target, {"endpoint_url": url, "emulator": True}, clear_spec=source)


def converge(provider: Any, desired: DesiredState, target: str) -> Any:
    """One cycle that makes the emulator hold ``desired`` (used to seed, and by tests)."""
    from reconciler.catalogue import rules_for
    from reconciler.core.gate import BasicGate
    from reconciler.core.loop import CycleDeps, CycleRequest, run_cycle
    from reconciler.core.policy import Policy
    from reconciler.orchestration.runtime import SystemClock
    from reconciler.testing import MemoryStore, RecordingSink

    request = CycleRequest(target=target, desired=desired, policy=Policy(max_parallel=8),
                           kinds=tuple(sorted(provider.kinds())), correlation_id=f"{target}-seed",
                           manual=True, approve=True)
    deps = CycleDeps(provider=provider, store=MemoryStore(), events=RecordingSink(),
                     clock=SystemClock(), gate=BasicGate(allow_empty_desired=True),
                     rules=rules_for(),
                     rng=random.Random(0))
    return run_cycle(request, deps)


def seed_aws_demo(url: str, *, target: str = DEMO_TARGET,
                  desired: DesiredState | None = None) -> list[str]:
    """Build the demo fleet as declared, then drift it the way people do; one line per change."""
    from reconciler.desired import load_desired_dir

    reset(url)
    state = desired or load_desired_dir(DEMO_DESIRED)
    provider = _provider(url, target, state.source_uri)
    ec2, ecs = provider.client("ec2"), provider.client("ecs")
    ec2.create_launch_template(LaunchTemplateName=DEMO_LAUNCH_TEMPLATE,
                               LaunchTemplateData={"ImageId": "ami-0c02fb55956c7d316",
                                                   "InstanceType": "t3.small"})
    report = converge(provider, state, target)
    if not report.outcome.converged:
        raise RuntimeError(f"seeding failed: {report.outcome.status}: {report.outcome.error}")
    return _drift(ec2, ecs, target)


def _instance_id(ec2: Any, name: str) -> str:
    found = ec2.describe_instances(Filters=[{"Name": "tag:reconciler:name", "Values": [name]},
                                            {"Name": "instance-state-name",
                                             "Values": ["running", "stopped"]}])
    return str(found["Reservations"][0]["Instances"][0]["InstanceId"])


def _drift(ec2: Any, ecs: Any, target: str) -> list[str]:
    lines = []
    ec2.terminate_instances(InstanceIds=[_instance_id(ec2, "web-3")])
    lines.append("terminated node ec2.Instance/web-3 (someone cleaned up the wrong box)")
    ec2.create_tags(Resources=[_instance_id(ec2, "web-2")], Tags=[{"Key": "team", "Value": "x"}])
    lines.append("retagged ec2.Instance/web-2 by hand (team=x)")
    ecs.update_service(cluster="apps", service="checkout", desiredCount=1)
    lines.append("scaled ecs.Service/checkout down from 4 to 1")
    family = f"rc-{target}-api"
    old = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    hotfix = [{**c, "image": "public.ecr.aws/nginx/nginx:1.25-hotfix"}
              for c in old["containerDefinitions"]]
    revision = ecs.register_task_definition(family=family, containerDefinitions=hotfix)
    ecs.update_service(cluster="apps", service="api",
                       taskDefinition=revision["taskDefinition"]["taskDefinitionArn"])
    lines.append("deployed a hand-built image to ecs.Service/api (nginx:1.25-hotfix)")
    ec2.run_instances(ImageId="ami-0c02fb55956c7d316", InstanceType="t3.nano", MinCount=1,
                      MaxCount=1, TagSpecifications=[{"ResourceType": "instance", "Tags": [
                          {"Key": "Name", "Value": "legacy-batch"}]}])
    lines.append("an unowned instance legacy-batch (not ours: must be left alone)")
    ledger = _instance_id(ec2, "ledger-db")
    lines.append(f"ledger-db ({ledger}) is protected: tagged reconciler:protected=true, "
                 "so no reconcile ever deletes it")
    return lines


def _serve(args: argparse.Namespace) -> int:
    with EmbeddedAws(port=args.port) as aws:
        path = _publish(aws.url)
        print(f"embedded AWS (moto) at {aws.url}; endpoint written to {path}", flush=True)
        if args.seed:
            for line in seed_aws_demo(aws.url):
                print(f"  drift: {line}", flush=True)
        print("Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            path.unlink(missing_ok=True)
    return 0


def _publish(url: str) -> Path:
    path = endpoint_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(url + "\n")
    return path


def _seed(args: argparse.Namespace) -> int:
    url = args.endpoint or endpoint_file().read_text().strip()
    for line in seed_aws_demo(url):
        print(f"drift: {line}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from reconciler.cli import main as reconcile

    with EmbeddedAws(port=args.port) as aws:
        path = _publish(aws.url)
        print(f"== embedded AWS (moto) at {aws.url} (endpoint in {path})")
        print("== seeding the aws_demo fleet, then drifting it")
        for line in seed_aws_demo(aws.url):
            print(f"   {line}")
        codes = []
        for step in (["plan"], ["apply", "--yes"], ["plan"]):
            print(f"\n== reconcile {' '.join(step)} --target {DEMO_TARGET}", flush=True)
            codes.append(reconcile([*step, "--target", DEMO_TARGET]))
        path.unlink(missing_ok=True)
    return 0 if codes[1:] == [0, 0] else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconciler.embedded", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run moto on 127.0.0.1 until Ctrl-C")
    serve.add_argument("--port", type=int, default=0, help="default: a free port")
    serve.add_argument("--seed", action="store_true", help="seed the demo fleet at start")
    seed = sub.add_parser("seed", help="reset a running embedded AWS and seed the demo fleet")
    seed.add_argument("--endpoint", help="default: the URL `serve` wrote")
    demo = sub.add_parser("demo", help="start, seed, plan, apply, plan, stop")
    demo.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    return {"serve": _serve, "seed": _seed, "demo": _demo}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
