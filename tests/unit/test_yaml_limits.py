"""Hostile YAML is refused on the event stream, before anything is built, whatever PyYAML allows."""

from __future__ import annotations

import sqlite3
import textwrap
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.config import load_config
from reconciler.core.errors import InvalidConfig, InvalidDesiredState
from reconciler.desired import load_desired_dir, load_desired_files, parse_yaml
from reconciler.desired.yamlcompose import EVENT_LIMITS, EventLimits, LimitExceeded, compose_bounded

DEMO = Path(__file__).parents[2] / "include" / "desired" / "demo"
CONFIG = Path(__file__).parents[2] / "include" / "config" / "targets.yaml"
HEAD = "resources:\n  - kind: sim.Node\n    name: node-1\n    spec:\n      labels:\n        deep: "
DEPTH = EVENT_LIMITS.depth


def nested(kind: str, depth: int) -> str:
    """A document whose ``deep`` label nests ``depth`` collections of one kind."""
    if kind == "flow sequence":
        return HEAD + "[" * depth + "]" * depth + "\n"
    if kind == "flow mapping":
        return HEAD + "{a: " * depth + "x" + "}" * depth + "\n"
    if kind == "block sequence":
        return HEAD + "\n          " + "- " * depth + "x\n"
    lines = [" " * (10 + 2 * level) + "a:" for level in range(depth)]
    return HEAD + "\n" + "\n".join(lines) + " x\n"


KINDS = ["flow sequence", "flow mapping", "block sequence", "block mapping"]


def problems_of(text: str, **kwargs: Any) -> list[tuple[int | None, str, str]]:
    doc = parse_yaml(text.encode(), "f.yaml", **kwargs)
    return [(p.line, ".".join(map(str, p.path)), p.message) for p in doc.problems]


@pytest.mark.parametrize("kind", KINDS)
def test_nesting_pyyaml_accepts_is_still_refused_by_our_limit(kind: str) -> None:
    text = nested(kind, 100)
    assert yaml.compose(text, Loader=yaml.CSafeLoader) is not None  # PyYAML's limit is 1000
    ((line, path, message),) = problems_of(text)
    assert message == f"nested deeper than {DEPTH} levels"
    assert path.startswith("resources.0.spec.labels.deep") and line is not None and line >= 6


@pytest.mark.parametrize("kind", KINDS)
def test_nesting_up_to_the_limit_loads(kind: str) -> None:
    # the label value itself sits 5 levels down: resources, [0], spec, labels, deep
    doc = parse_yaml(nested(kind, DEPTH - 5).encode(), "f.yaml")
    assert doc.problems == () and doc.value is not None


class CountingLoader(yaml.SafeLoader):
    """The pure-Python loader: no nesting limit of its own, and it counts events read."""

    events = 0

    def get_event(self) -> Any:
        CountingLoader.events += 1
        return super().get_event()


@pytest.mark.parametrize("kind", ["flow mapping", "block sequence", "block mapping"])
def test_a_hostile_document_is_refused_after_a_few_events(kind: str) -> None:
    CountingLoader.events = 0
    with pytest.raises(LimitExceeded, match="nested deeper"):
        compose_bounded(nested(kind, 5000), CountingLoader)
    assert CountingLoader.events < 3 * DEPTH  # a key and a collection per level, at most


def test_the_node_and_value_limits_hold_at_any_size() -> None:
    small = EventLimits(depth=8, nodes=100, scalar=10)
    wide = "{" + ", ".join(f"k{i}: v" for i in range(60)) + "}"
    too_many = "over 100 YAML nodes in one file; split it"
    assert problems_of(wide, limits=small) == [(1, "k49", too_many)]  # the 101st: k49's value
    assert problems_of("a: [" + "1, " * 99 + "1]", limits=small)[0][2].startswith("over 100")
    long = problems_of("a:\n  b: " + "x" * 11 + "\n", limits=small)
    assert long == [(2, "a.b", "a value of 11 characters, over the 10-character limit")]
    assert problems_of("a: " + "x" * 10, limits=small) == []


# Inputs too large to keep in tests/corpus: written on the fly, checked the same way.
HOSTILE: dict[str, tuple[Callable[[], str], int, str, str]] = {
    "flow sequence, 40,000 deep": (lambda: nested("flow sequence", 40_000), 6,
                                   "", "nested deeper than"),
    "flow mapping, 40,000 deep": (lambda: nested("flow mapping", 40_000), 6,
                                  "resources[0].spec.labels.deep.a", "nested deeper than"),
    "block sequence, 40,000 deep": (lambda: nested("block sequence", 40_000), 7,
                                    "resources[0].spec.labels.deep[0]", "nested deeper than"),
    "block mapping, 1,000 deep": (lambda: nested("block mapping", 1000), 66,
                                  "resources[0].spec.labels.deep.a", "nested deeper than"),
    "a mapping 600,000 keys wide": (
        lambda: HEAD + "{" + ", ".join(f"k{i}: v" for i in range(600_000)) + "}\n",
        6, "resources[0].spec.labels.deep", "over 1000000 YAML nodes in one file"),
    "a value over 1 MiB": (lambda: HEAD + "x" * (1024 * 1024 + 1) + "\n", 6,
                           "resources[0].spec.labels.deep", "over the 1048576-character limit"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_file_is_rejected_naming_its_file_line_and_field(
    tmp_path: Path, name: str
) -> None:
    make, line, field, message = HOSTILE[name]
    path = tmp_path / "fleet.yaml"
    path.write_text(make())
    with pytest.raises(InvalidDesiredState) as caught:
        load_desired_dir(path)
    ((loc, text),) = caught.value.problems
    assert (loc.file, loc.line) == (str(path.resolve()), line), caught.value.problems
    assert field in (loc.field or "") and message in text, caught.value.problems


def test_an_s3_object_gets_the_same_guard() -> None:
    source = "s3://fleet/prod/nodes.yaml?versionId=3"  # what load_desired_s3 passes on
    with pytest.raises(InvalidDesiredState) as caught:
        load_desired_files([(source, nested("block sequence", 40_000).encode())], source_uri="s3")
    ((loc, text),) = caught.value.problems
    assert loc.file == source and loc.line == 7 and "nested deeper" in text


def test_the_targets_config_gets_the_same_guard(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text("targets:\n  prod:\n    provider: {type: simulated}\n    desired: d\n"
                    "    tags: [" + "x" * (1024 * 1024 + 1) + "]\n")
    with pytest.raises(InvalidConfig) as caught:
        load_config(path, env={})
    ((loc, text),) = caught.value.problems
    assert (loc.line, loc.field) == (5, "targets.prod.tags[0]") and "character limit" in text


def dump(database: Path) -> list[str]:
    with closing(sqlite3.connect(database)) as db:
        return list(db.iterdump())


def test_a_hostile_desired_file_stops_the_cli_before_the_provider_or_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "desired").mkdir()
    fleet = tmp_path / "desired" / "fleet.yaml"
    fleet.write_text(HEAD.removesuffix("\n        deep: ") + " {}\n")
    config = tmp_path / "targets.yaml"
    config.write_text(textwrap.dedent(f"""\
        targets:
          lab:
            provider: {{type: simulated, options: {{state: "{tmp_path}/sim.db"}}}}
            desired: desired
        """))
    cli = ["--config", str(config), "--store", f"sqlite:///{tmp_path}/state.db"]
    assert main([*cli, "sim", "seed", "--target", "lab"]) == 0
    fleet_before = dump(tmp_path / "sim.db")
    fleet.write_text(nested("flow mapping", 40_000))
    capsys.readouterr()
    for command in ("validate", "plan", "apply"):
        assert main([*cli, command, "--target", "lab"]) == 1
        assert "fleet.yaml:6: resources[0].spec.labels.deep" in capsys.readouterr().err
    assert dump(tmp_path / "sim.db") == fleet_before
    assert main([*cli, "history", "--target", "lab"]) == 0
    assert "no cycles yet" in capsys.readouterr().out


# --- the bounded composer builds what yaml.compose builds ------------------------------------

KEYS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), KEYS)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(value=VALUES, flow=st.sampled_from([None, True, False]))
def test_any_document_parses_to_what_pyyaml_loads(value: Any, flow: bool | None) -> None:
    text = yaml.safe_dump({"v": value}, default_flow_style=flow, allow_unicode=True)
    assert parse_yaml(text.encode(), "f.yaml").value == yaml.safe_load(text)


def test_anchors_merges_and_the_repository_files_parse_as_pyyaml_loads() -> None:
    texts = [p.read_text() for p in [*sorted(DEMO.glob("*.yaml")), CONFIG]]
    texts.append("a: &a {x: 1, y: [1, 2]}\nb: {<<: *a, y: 3}\nc: [*a, *a]\nd: &s 'q'\ne: *s\n")
    for text in texts:
        assert parse_yaml(text.encode(), "f.yaml").value == yaml.safe_load(text)


@pytest.mark.parametrize(("text", "line", "message"), [
    ("a: &x 1\nb: &x 2\n", 2, "found duplicate anchor 'x'"),
    ("a: *nope\n", 1, "found undefined alias 'nope'"),
    ("a: 1\n---\nb: 2\n", 2, "expected a single document in the stream"),
])
def test_anchor_and_document_errors_keep_their_line(text: str, line: int, message: str) -> None:
    ((got_line, _, got),) = problems_of(text)
    assert got_line == line and message in got
