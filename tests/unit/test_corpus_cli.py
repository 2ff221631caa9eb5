"""Every bad input of tests/corpus (and the generated hostile YAML) through the ``reconcile`` CLI.

For each case, ``validate``, ``plan`` and ``apply --yes`` exit 1 and print the problem as
``file:line: field: why``; no call reaches the provider (a config case does not even build
one); the fleet, the state store (history, audit, breaker) stay byte for byte as they were.
The expectations are the loaders' own (tests/unit/test_desired.py, test_config.py,
test_yaml_limits.py): this file adds the CLI's exit code, message, provider and history.
"""

from __future__ import annotations

import sqlite3
import textwrap
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.orchestration import runtime
from tests.unit import test_config, test_desired, test_yaml_limits

CORPUS = Path(__file__).parents[1] / "corpus"
COMMANDS = (["validate"], ["plan"], ["apply", "--yes"])
GOOD = """\
resources:
  - kind: sim.Node
    name: node-1
  - kind: sim.Workload
    name: web
    spec: {replicas: 2, containers: [{name: web, image: "nginx:1.27"}]}
    depends_on: [sim.Node/node-1]
"""


@dataclass(frozen=True)
class Case:
    config: Path  # the targets file the CLI is given
    target: str
    file: Path  # the file the problem is in
    line: int | None
    field: str
    message: str
    never_shown: str | None = None


class CountingProvider:
    """The target's real provider, counting every call made to it (``kinds`` is no call)."""

    def __init__(self, inner: Any, calls: list[str]) -> None:
        self._inner, self._calls = inner, calls

    def kinds(self) -> frozenset[str]:
        return frozenset(self._inner.kinds())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(name)
            return attr(*args, **kwargs)

        return counted


@dataclass
class World:
    root: Path
    store: str
    fleet: Path
    built: list[str]
    calls: list[str]

    def desired_case(self, source: Path) -> Path:
        """A config whose one target ``lab`` (this world's fleet and store) reads ``source``."""
        config = self.root / "configs" / f"{source.name}.targets.yaml"
        config.parent.mkdir(exist_ok=True)
        config.write_text(_config(self.fleet, source))
        return config


def _config(fleet: Path, desired: Path) -> str:
    return textwrap.dedent(f"""\
        targets:
          lab:
            provider: {{type: simulated, options: {{state: "{fleet}"}}}}
            desired: "{desired}"
            policy: {{backoff_base_s: 0.01, backoff_cap_s: 0.05}}
        """)


def dump(database: Path) -> list[str]:
    with closing(sqlite3.connect(database)) as db:
        return list(db.iterdump())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A fleet the store has one converged cycle of: what no bad input may change."""
    root = tmp_path_factory.mktemp("corpus-cli")
    (root / "desired").mkdir()
    (root / "desired" / "fleet.yaml").write_text(GOOD)
    mp = pytest.MonkeyPatch()
    for name in (
        "RECONCILER_TEST_UNSET_VAR",
        "RECONCILER_EVENTS_WEBHOOK",
        "RECONCILER_WEBHOOK_URL",
        "RECONCILER_CONFIG",
        "RECONCILER_STORE_URL",
    ):
        mp.delenv(name, raising=False)
    mp.setenv("RECONCILER_HOME", str(root / "home"))
    mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "s3cr3t")  # what webhook_env_not_allowed names
    built: list[str] = []
    calls: list[str] = []
    real = runtime.build_provider

    def counting(cfg: Any, config_file: Path | None = None) -> Any:
        built.append(cfg.name)
        return CountingProvider(real(cfg, config_file), calls)

    world = World(root, f"sqlite:///{root}/state.db", root / "fleet.db", built, calls)
    good = world.desired_case(root / "desired")
    cli = ["--config", str(good), "--store", world.store]
    assert main([*cli, "apply", "--yes", "--target", "lab"]) == 0  # creates the fleet
    assert main([*cli, "apply", "--yes", "--target", "lab"]) == 0  # in sync: 2 cycles of history
    mp.setattr(runtime, "build_provider", counting)
    yield world
    mp.undo()


def _desired_cases() -> dict[str, Case]:
    cases = {}
    for name, (line, field, message) in test_desired.EXPECTED.items():
        file = (CORPUS / "desired" / name).resolve()
        cases[f"desired/{name}"] = Case(
            Path(), "lab", file, line, field, message, test_desired.NEVER_SHOWN.get(name)
        )
    return cases


def _config_cases() -> dict[str, Case]:
    cases = {}
    for name, (line, field, message) in test_config.EXPECTED.items():
        file = (CORPUS / "config" / name).resolve()
        cases[f"config/{name}"] = Case(
            file, "prod", file, line, field, message, test_config.NEVER_SHOWN.get(name)
        )
    return cases


DESIRED = _desired_cases()
CONFIG = _config_cases()
HOSTILE = sorted(test_yaml_limits.HOSTILE)


def test_the_corpus_has_at_least_80_cases() -> None:
    assert len(DESIRED) + len(CONFIG) >= 80
    files = [p for folder in ("desired", "config") for p in (CORPUS / folder).iterdir()]
    assert len(files) == len(DESIRED) + len(CONFIG)


def run_case(world: World, case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    fleet, store = dump(world.fleet), dump(world.root / "state.db")
    world.built.clear()
    world.calls.clear()
    where = case.file if case.line is None else f"{case.file}:{case.line}"
    for command in COMMANDS:
        argv = [
            "--config",
            str(case.config),
            "--store",
            world.store,
            command[0],
            "--target",
            case.target,
            *command[1:],
        ]
        assert main(argv) == 1, (command, capsys.readouterr())
        out, err = capsys.readouterr()
        located = [
            line.strip() for line in err.splitlines() if line.strip().startswith(f"{where}: ")
        ]
        assert any(case.field in line and case.message in line for line in located), err
        assert case.never_shown is None or case.never_shown not in out + err
    assert world.calls == [], world.calls  # not one provider call
    if case.config == case.file:  # a bad config: no provider is even built
        assert world.built == []
    assert dump(world.fleet) == fleet
    assert dump(world.root / "state.db") == store  # history, audit, breaker, leases


@pytest.mark.parametrize("name", sorted(DESIRED))
def test_a_bad_desired_file_stops_the_cli_before_the_provider_and_the_history(
    world: World, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    case = DESIRED[name]
    run_case(world, _with_config(case, world.desired_case(case.file)), capsys)


@pytest.mark.parametrize("name", sorted(CONFIG))
def test_a_bad_config_stops_the_cli_before_any_provider_exists(
    world: World, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_case(world, CONFIG[name], capsys)


@pytest.mark.parametrize("name", HOSTILE)
def test_generated_hostile_yaml_stops_the_cli_the_same_way(
    world: World, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make, line, field, message = test_yaml_limits.HOSTILE[name]
    source = world.root / "hostile" / (name.replace(" ", "_").replace(",", "") + ".yaml")
    source.parent.mkdir(exist_ok=True)
    source.write_text(make())
    case = Case(world.desired_case(source), "lab", source.resolve(), line, field, message)
    run_case(world, case, capsys)


def _with_config(case: Case, config: Path) -> Case:
    return Case(
        config, case.target, case.file, case.line, case.field, case.message, case.never_shown
    )


def test_the_history_still_holds_the_cycles_from_before(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    config = world.desired_case(world.root / "desired")
    capsys.readouterr()
    assert (
        main(
            [
                "--config",
                str(config),
                "--store",
                world.store,
                "history",
                "--json",
                "--target",
                "lab",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.count('"status"') == 2


# Bad arguments, not files: (argv after --config/--store, exit code, what stderr says)
ARGUMENTS: dict[str, tuple[list[str], int, str]] = {
    "a kind the target does not manage, to plan": (
        ["plan", "--target", "lab", "--only-kinds", "sim.Nodes"],
        1,
        "--only-kinds: target lab has no kind sim.Nodes (its kinds: sim.Node, sim.Workload)",
    ),
    "a kind of another provider, to apply": (
        ["apply", "--yes", "--target", "lab", "--only-kinds", "sim.Node", "ec2.Instance"],
        1,
        "--only-kinds: target lab has no kind ec2.Instance",
    ),
    "a target the config does not have": (
        ["plan", "--target", "labs"],
        1,
        "targets.yaml: no target 'labs' (known: lab)",
    ),
    "an import selector without a value": (
        ["import", "--target", "lab", "--selector", "team"],
        2,
        "argument --selector: expected KEY=VALUE, got 'team'",
    ),
    "an import selector without a key": (
        ["import", "--target", "lab", "--selector", "=platform"],
        2,
        "expected KEY=VALUE",
    ),
    "an import of a kind the target does not manage": (
        ["import", "--target", "lab", "--kind", "ecs.Service"],
        1,
        "target lab has no kind ecs.Service",
    ),
    "a history of no cycles": (
        ["history", "--target", "lab", "--limit", "0"],
        2,
        "expected a whole number of 1 or",
    ),
    "a history longer than SQLite can count": (
        ["history", "--target", "lab", "--limit", "99999999999999999999"],
        2,
        "argument --limit: expected a whole number of 1 or more, up to 1000000",
    ),
    "a drift of more than the whole fleet": (
        ["sim", "drift", "--target", "lab", "--fraction", "2"],
        2,
        "argument --fraction: expected a number from 0 to 1, got '2'",
    ),
    "a drift of less than nothing": (
        ["sim", "drift", "--target", "lab", "--fraction", "-0.1"],
        2,
        "argument --fraction: expected a number from 0 to 1, got '-0.1'",
    ),
    "a drift fraction that is not a number": (
        ["sim", "drift", "--target", "lab", "--fraction", "nan"],
        2,
        "argument --fraction: expected a number from 0 to 1, got 'nan'",
    ),
    "a store whose directory does not exist": (
        ["--store", "sqlite:////nonexistent-reconciler-store/x.db", "status", "--target", "lab"],
        1,
        "no directory /nonexistent-reconciler-store (create it first",
    ),
    "a store of an unsupported database": (
        ["--store", "mysql://user@localhost/db", "status", "--target", "lab"],
        1,
        "store URL: store must be sqlite or postgresql, not 'mysql'",
    ),
}


@pytest.mark.parametrize("name", sorted(ARGUMENTS))
def test_a_bad_argument_stops_the_cli_before_the_provider_and_the_history(
    world: World, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, code, message = ARGUMENTS[name]
    config = world.desired_case(world.root / "desired")
    fleet, store = dump(world.fleet), dump(world.root / "state.db")
    world.calls.clear()
    capsys.readouterr()
    try:
        assert main(["--config", str(config), "--store", world.store, *argv]) == code
    except SystemExit as exit_:  # argparse's own refusals
        assert exit_.code == code
    assert message in capsys.readouterr().err
    assert world.calls == []
    assert dump(world.fleet) == fleet and dump(world.root / "state.db") == store


def test_a_store_url_in_a_missing_directory_makes_no_directory(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = world.desired_case(world.root / "desired")
    missing = tmp_path / "no-such-dir"
    url = f"sqlite:///{missing}/state.db"
    assert main(["--config", str(config), "--store", url, "status", "--target", "lab"]) == 1
    assert f"error: invalid configuration:\n  store URL {url}: no directory {missing}" in (
        capsys.readouterr().err
    )
    assert not missing.exists()


def test_the_default_store_still_makes_its_home(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = world.desired_case(world.root / "desired")
    monkeypatch.setenv("RECONCILER_HOME", str(tmp_path / "new" / "home"))
    assert main(["--config", str(config), "status", "--target", "lab"]) == 0
    assert (tmp_path / "new" / "home" / "state.db").is_file()
