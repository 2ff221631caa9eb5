"""Desired state from YAML: valid files load normalised; every bad input names file, line, field."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.catalogue import REGISTRY
from reconciler.core.errors import InvalidDesiredState, SourceLocation
from reconciler.core.model import ResourceKey
from reconciler.desired import (
    find_cycles,
    load_desired,
    load_desired_dir,
    load_desired_files,
    parse_yaml,
)
from reconciler.orchestration.runtime import check_kinds
from reconciler.providers.simfleet import SIM_KINDS

CORPUS = Path(__file__).parents[1] / "corpus" / "desired"
DEMO = Path(__file__).parents[2] / "include" / "desired" / "demo"
NOW = datetime(2026, 1, 1, tzinfo=UTC)

# corpus file -> (line, field substring, message substring) of a problem that must be reported
EXPECTED: dict[str, tuple[int | None, str, str]] = {
    "syntax_error.yaml": (5, "", "YAML syntax error"),
    "tab_indentation.yaml": (3, "", "never tabs"),
    "alias_bomb.yaml": (12, "resources[0].spec.labels.l5", "aliases expand to over"),
    "alias_bomb_mappings.yaml": (12, "resources[0].spec.labels.m5.k0", "aliases expand to over"),
    "recursive_alias.yaml": (6, "resources[0].spec.labels.self", "nested deeper"),
    "deep_nesting.yaml": (6, "resources[0].spec.labels.deep[0][0]", "nested deeper than 64"),
    "deep_flow_mapping.yaml": (7, "resources[0].spec.labels.deep.a.a", "nested deeper than 64"),
    "deep_block_sequence.yaml": (8, "resources[0].spec.labels.deep[0][0]", "nested deeper than 64"),
    "deep_block_mapping.yaml": (67, "resources[0].spec.labels.deep.a.a", "nested deeper than 64"),
    "undefined_alias.yaml": (4, "", "undefined alias"),
    "multiple_documents.yaml": (4, "", "single document"),
    "python_tag.yaml": (6, "resources[0].spec.labels.owner", "unsupported YAML tag"),
    "non_utf8.yaml": (3, "", "not valid UTF-8"),
    "empty_file.yaml": (None, "", "file is empty"),
    "comments_only.yaml": (None, "", "file is empty"),
    "empty_resources.yaml": (1, "resources", "declares no resources"),
    "top_level_list.yaml": (1, "", "top level must be a mapping"),
    "unknown_top_level_key.yaml": (4, "defaults", "unknown top-level key"),
    "resources_not_list.yaml": (1, "resources", "must be a list"),
    "unknown_resource_field.yaml": (4, "resources[0].replicas", "unknown field"),
    "missing_name.yaml": (4, "resources[1].name", "field required"),
    "unknown_kind.yaml": (2, "resources[0].kind", "unknown kind 'sim.Database'; known kinds:"),
    "wrong_spec_type.yaml": (5, "resources[0].spec.replicas", "valid integer"),
    "spec_not_mapping.yaml": (4, "resources[0].spec", "valid dictionary"),
    "negative_replicas.yaml": (8, "resources[0].spec.replicas", "greater than or equal to 0"),
    "absurd_replicas.yaml": (5, "resources[0].spec.replicas", "less than or equal to"),
    "unknown_spec_field.yaml": (9, "spec.containers[0].imagePullPolicy", "unknown field"),
    "duplicate_mapping_key.yaml": (7, "resources[0].spec.replicas", "duplicate key 'replicas'"),
    "duplicate_resource.yaml": (7, "resources[2].name", "duplicate_resource.yaml:2"),
    "name_with_slash.yaml": (3, "resources[0].name", "1-63 characters"),
    "name_shell_metachar.yaml": (3, "resources[0].name", "1-63 characters"),
    "name_control_char.yaml": (5, "resources[1].name", "1-63 characters"),
    "name_too_long.yaml": (3, "resources[0].name", "1-63 characters"),
    "name_not_string.yaml": (3, "resources[0].name", "valid string"),
    "depends_on_unknown.yaml": (11, "resources[1].depends_on[1]", "node-9 is not declared"),
    "depends_on_bad_format.yaml": (4, "resources[0].depends_on[0]", "expected 'kind/name'"),
    "dependency_cycle.yaml": (4, "resources[1].depends_on", "node-a -> sim.Node/node-b -> sim."),
    "self_dependency.yaml": (2, "resources[0].depends_on", "sim.Node/node-1 -> sim.Node/node-1"),
    "bad_sla.yaml": (4, "resources[0].sla", "'critical', 'standard' or 'best_effort'"),
    "protected_not_bool.yaml": (4, "resources[0].protected", "valid boolean"),
    "negative_tolerance.yaml": (8, "resources[0].tolerance.replicas", "greater than or equal"),
    # YAML that is not what it looks like
    "utf16.yaml": (1, "", "not valid UTF-8: byte 0xff at offset 0"),
    "nul_byte.yaml": (3, "", "character 0 not allowed"),
    "unclosed_quote.yaml": (6, "", "quoted scalar (from line 3)"),
    "bad_indentation.yaml": (3, "", "mapping values are not allowed"),
    "duplicate_directive.yaml": (2, "", "duplicate %YAML directive"),
    "content_after_document_end.yaml": (5, "", "expected <document start>"),
    "binary_tag.yaml": (6, "resources[0].spec.labels.key", "unsupported YAML tag"),
    "set_tag.yaml": (5, "resources[0].spec.labels", "unsupported YAML tag 'tag:yaml.org,2002:set'"),
    "complex_key.yaml": (6, "resources[0].spec.labels", "mapping keys must be plain scalars"),
    "merge_non_mapping.yaml": (5, "resources[0].spec", "'<<' merges only a mapping"),
    "name_yes_bool.yaml": (4, "resources[0].name", "YAML read True as a boolean"),
    "timestamp_label.yaml": (6, "spec.labels.expires", "YAML read 2027-01-01 as a date; quote it"),
    "label_not_string.yaml": (7, "spec.labels.cost_center", "YAML read 4711 as a number"),
    "label_key_not_string.yaml": (6, "resources[0].spec.labels.1", "key 1: Input should be a"),
    # layout and kinds
    "missing_kind.yaml": (2, "resources[0].kind", "field required"),
    "resource_not_mapping.yaml": (4, "resources[1]", "each resource must be a mapping"),
    "bad_region_in_kind.yaml": (2, "resources[0].kind", "unknown kind 'sim.Node@Mars'"),
    "kind_not_served.yaml": (6, "kind", "this target does not manage ec2.Instance"),
    "region_not_served.yaml": (4, "kind", "'eu-west-1' is not a further region or account"),
    # names
    "name_empty.yaml": (3, "resources[0].name", "1-63 characters"),
    "name_bidi_override.yaml": (3, "resources[0].name", "1-63 characters"),
    # dependencies
    "depends_on_not_list.yaml": (6, "resources[1].depends_on", "valid list"),
    "depends_on_unknown_kind.yaml": (4, "depends_on[0]", "sim.Database/orders is not declared"),
    "dependency_cycle_across_kinds.yaml": (
        2,
        "resources[0].depends_on",
        "sim.Node/node-1 -> sim.Workload/web -> sim.Node",
    ),
    # what the engine may ignore or tolerate
    "ignore_fields_bad_path.yaml": (4, "resources[0].ignore_fields[0]", "dotted field path"),
    "ignore_fields_unknown_field.yaml": (6, "ignore_fields[0]", "'replica' is not a field of"),
    "tolerance_unknown_field.yaml": (6, "tolerance.replica", "'replica' is not a field of"),
    "tolerance_nan.yaml": (5, "resources[0].tolerance.replicas", "finite number"),
    # spec types and ranges, per kind
    "replicas_float.yaml": (5, "resources[0].spec.replicas", "valid integer (got 2.5)"),
    "replicas_bool.yaml": (6, "resources[0].spec.replicas", "valid integer (got True)"),
    "replicas_quoted.yaml": (5, "resources[0].spec.replicas", "valid integer"),
    "huge_integer.yaml": (5, "resources[0].spec.replicas", "less than or equal to 10000"),
    "containers_empty.yaml": (6, "resources[0].spec.containers", "at least 1 item"),
    "container_missing_image.yaml": (7, "spec.containers[0].image", "field required"),
    "duplicate_container_name.yaml": (6, "spec.containers", "container names must be unique"),
    "memory_too_low.yaml": (7, "spec.containers[0].memory", "greater than or equal to 4"),
    "node_state_unknown.yaml": (5, "resources[0].spec.state", "'running' or 'stopped'"),
    "node_unknown_spec_field.yaml": (6, "resources[0].spec.cpu", "unknown field 'cpu'"),
    "ec2_missing_image.yaml": (4, "resources[0].spec.image_id", "field required"),
    "ec2_unknown_spec_field.yaml": (6, "spec.instanceType", "unknown field 'instanceType'"),
    "ec2_name_tag.yaml": (7, "resources[0].spec.tags", "tag 'Name' is set by the provider"),
    "asg_min_above_max.yaml": (4, "resources[0].spec", "min_size <= desired_capacity <= max"),
    "asg_zones_and_subnets.yaml": (4, "resources[0].spec", "exactly one of availability_zones"),
    "asg_unknown_spec_field.yaml": (8, "resources[0].spec.desired", "unknown field 'desired'"),
    "ecs_cluster_unknown_spec_field.yaml": (5, "spec.capacity_providers", "unknown field"),
    "ecs_service_unknown_spec_field.yaml": (
        10,
        "resources[1].spec.task_definition",
        "unknown field 'task_definition'",
    ),
    "ecs_launch_type_lowercase.yaml": (7, "spec.launch_type", "'EC2', 'FARGATE' or 'EXTERNAL'"),
    "ecs_port_out_of_range.yaml": (10, "port_mappings[0].container_port", "65535 (got 70000)"),
    "ecs_reserved_tag.yaml": (8, "resources[0].spec.tags", "'reconciler:target' is set by"),
    # secrets: never echoed, never kept where only a pointer may go
    "ecs_env_not_string.yaml": (12, "environment.PORT", "YAML read it as a number; quote it"),
    "ecs_env_and_secret.yaml": (8, "spec.containers[0]", "DB_PASSWORD: set in both"),
    "ecs_secret_value_in_clear.yaml": (
        13,
        "secrets[0].value_from",
        "never the secret value itself",
    ),
}

# problems found only against a target, after the files loaded (runtime.check_kinds): here
# the simulated provider's target that tests/unit/test_corpus_cli.py runs every case in
TARGET_LEVEL = {"kind_not_served.yaml", "region_not_served.yaml"}
# values that must appear in no message (they stand for secrets)
NEVER_SHOWN = {"ecs_env_not_string.yaml": "8080", "ecs_secret_value_in_clear.yaml": "P@ss"}

WEB = """\
resources:
  - kind: sim.Node
    name: node-1
  - kind: sim.Workload
    name: web
    sla: critical
    spec:
      replicas: 3
      containers:
        - name: web
          image: "nginx:1.27"
    depends_on: [sim.Node/node-1]
    ignore_fields: [labels.team]
    tolerance: {replicas: 1}
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def rejected(path: Path, **kwargs: Any) -> list[tuple[SourceLocation, str]]:
    with pytest.raises(InvalidDesiredState) as caught:
        load_desired_dir(path, **kwargs)
    return caught.value.problems


def rejected_for_sim_target(path: Path) -> list[tuple[SourceLocation, str]]:
    """Problems of the file as a target of the simulated provider loads it (files, then kinds)."""
    with pytest.raises(InvalidDesiredState) as caught:
        check_kinds(load_desired_dir(path), SIM_KINDS)
    return caught.value.problems


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)
    assert len(EXPECTED) >= 20 and TARGET_LEVEL <= set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_malformed_file_is_rejected_naming_its_file_line_and_field(name: str) -> None:
    line, field, message = EXPECTED[name]
    problems = rejected_for_sim_target(CORPUS / name)
    file = str((CORPUS / name).resolve())
    assert any(
        loc.file == file and loc.line == line and field in (loc.field or "") and message in text
        for loc, text in problems
    ), problems
    assert NEVER_SHOWN.get(name, "\0") not in str(problems)


@pytest.mark.parametrize("name", sorted(TARGET_LEVEL))
def test_a_file_valid_alone_is_refused_by_the_target_it_cannot_serve(name: str) -> None:
    assert load_desired_dir(CORPUS / name).resources


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - TARGET_LEVEL))
def test_an_s3_object_with_the_same_bytes_gets_the_same_problem(name: str) -> None:
    """The S3 source parses each object with the same reader (reconciler.desired.s3_source)."""
    line, field, message = EXPECTED[name]
    source = f"s3://fleet-desired/prod/{name}?versionId=3"
    message = message.replace(f"{name}:", f"{name}?versionId=3:")  # a location in the message
    with pytest.raises(InvalidDesiredState) as caught:
        load_desired_files([(source, (CORPUS / name).read_bytes())], source_uri="s3://x/")
    assert any(
        loc.file == source and loc.line == line and field in (loc.field or "") and message in text
        for loc, text in caught.value.problems
    ), caught.value.problems


def test_the_demo_desired_state_loads() -> None:
    state = load_desired_dir(DEMO, now=NOW)
    kinds = [r.key.kind for r in state.resources]
    assert kinds.count("sim.Node") == 4 and kinds.count("sim.Workload") == 4
    assert any(r.protected for r in state.resources)
    assert state.source_uri == str(DEMO.resolve()) and state.loaded_at == NOW


def test_a_valid_file_loads_normalised_with_its_source_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "fleet.yaml", WEB)
    state = load_desired_dir(tmp_path, now=NOW)
    node, web = state.resources
    assert node.key == ResourceKey(kind="sim.Node", name="node-1") and node.source_line == 2
    assert node.spec == REGISTRY["sim.Node"].spec_model.model_validate({}).model_dump(mode="json")
    assert web.source_file == str(path.resolve()) and web.source_line == 4
    container = {"name": "web", "image": "nginx:1.27", "cpu": 100, "memory": 128, "env": {}}
    assert web.spec["containers"] == [container]
    assert web.depends_on == (node.key,) and web.sla == "critical"
    assert web.ignore_fields == ("labels.team",) and web.tolerance == {"replicas": 1.0}


def test_a_single_file_path_and_the_yml_suffix_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "fleet.yml", WEB)
    assert len(load_desired_dir(path).resources) == 2
    state = load_desired_dir(tmp_path)
    assert len(state.resources) == 2 and state.loaded_at.tzinfo is not None


def test_dotfiles_and_other_suffixes_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "fleet.yaml", WEB)
    write(tmp_path, ".fleet.yaml", "not: [valid")
    write(tmp_path, "README.md", "resources: nope")
    assert len(load_desired_dir(tmp_path).resources) == 2


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path) -> None:
    text = WEB.replace("replicas: 3", "replicas: -3").replace("sla: critical", "sla: high")
    text += "  - kind: sim.Nope\n    name: x\n  - kind: sim.Node\n    name: 'a b'\n"
    problems = rejected(write(tmp_path, "fleet.yaml", text))
    expected = {"[1].spec.replicas", "[1].sla", "[2].kind", "[3].name"}
    assert {f"resources{field}" for field in expected} <= {loc.field for loc, _ in problems}


def test_spec_errors_point_at_the_line_of_the_nested_field(tmp_path: Path) -> None:
    text = WEB + "  - kind: sim.Workload\n    name: api\n    spec:\n      replicas: 1\n"
    text += "      containers:\n        - {name: a, image: x}\n        - name: b\n"
    text += "          image: y\n          memory: 1\n"
    ((loc, _),) = rejected(write(tmp_path, "fleet.yaml", text))
    assert (loc.line, loc.field) == (23, "resources[2].spec.containers[1].memory")


def test_a_duplicate_across_files_names_both_locations(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", WEB)
    second = write(tmp_path, "b.yaml", "resources:\n  - kind: sim.Node\n    name: node-1\n")
    ((loc, message),) = rejected(tmp_path)
    assert (loc.file, loc.line, loc.field) == (str(second.resolve()), 3, "resources[0].name")
    assert f"{(tmp_path / 'a.yaml').resolve()}:2" in message


def test_a_dependency_cycle_across_files_is_rejected(tmp_path: Path) -> None:
    node = "    name: node-1\n"
    write(tmp_path, "a.yaml", WEB.replace(node, node + "    depends_on: [sim.Workload/web]\n"))
    ((loc, message),) = rejected(tmp_path)
    assert loc.line == 2
    assert message.endswith("sim.Node/node-1 -> sim.Workload/web -> sim.Node/node-1")


def test_an_empty_desired_state_is_refused_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    assert "no YAML files" in rejected(tmp_path / "none")[0][1]
    assert load_desired_dir(tmp_path / "none", allow_empty=True).resources == ()
    write(tmp_path / "empty", "a.yaml", "resources: []\n")
    write(tmp_path / "empty", "b.yaml", "")
    write(tmp_path / "empty", "c.yaml", "resources:\n")
    assert len(rejected(tmp_path / "empty")) == 3
    assert load_desired_dir(tmp_path / "empty", allow_empty=True).resources == ()


def test_an_empty_file_next_to_valid_ones_is_still_refused(tmp_path: Path) -> None:
    write(tmp_path, "fleet.yaml", WEB)
    write(tmp_path, "truncated.yaml", "")
    ((loc, _),) = rejected(tmp_path)
    assert loc.file.endswith("truncated.yaml")


def test_a_missing_path_is_rejected(tmp_path: Path) -> None:
    assert "no such file" in rejected(tmp_path / "nope")[0][1]


def test_s3_sources_go_to_the_s3_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.desired import s3_source

    seen: list[str] = []
    monkeypatch.setattr(s3_source, "load_desired_s3", lambda uri, **kw: seen.append(uri))
    load_desired("s3://bucket/prefix/")
    assert seen == ["s3://bucket/prefix/"]  # loading itself: tests/integration/aws


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:  # sparse: 50 MB on paper, nothing on disk
        handle.seek(50 * 1024 * 1024)
        handle.write(b"\n")
    ((loc, message),) = rejected(big)
    assert loc.file == str(big.resolve()) and "limit" in message


def test_oversized_bytes_are_refused_by_the_parser_too() -> None:
    doc = parse_yaml(b"a: 1\n" * 10, "x.yaml", max_bytes=20)
    assert doc.value is None and "limit" in doc.problems[0].message


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_bytes(b"\xef\xbb\xbf" + WEB.encode())
    assert len(load_desired_dir(tmp_path).resources) == 2


def test_merge_keys_are_expanded_and_explicit_keys_win(tmp_path: Path) -> None:
    text = WEB + (
        "  - kind: sim.Workload\n    name: api\n    spec:\n      <<: &base\n"
        "        replicas: 1\n        containers: [{name: a, image: x}]\n      replicas: 5\n"
    )
    state = load_desired_dir(write(tmp_path, "fleet.yaml", text))
    api = next(r for r in state.resources if r.key.name == "api")
    assert api.spec["replicas"] == 5 and api.spec["containers"][0]["image"] == "x"


def test_the_error_survives_pickling(tmp_path: Path) -> None:
    problems = rejected(CORPUS / "bad_sla.yaml")
    assert pickle.loads(pickle.dumps(InvalidDesiredState(problems))).problems == problems


def test_the_version_ignores_formatting_comments_order_and_file_split(tmp_path: Path) -> None:
    base = load_desired_dir(write(tmp_path / "a", "fleet.yaml", WEB)).version
    doc = yaml.safe_load(WEB)
    node, web = doc["resources"]
    write(tmp_path / "b", "1.yaml", "# nodes\n" + yaml.safe_dump({"resources": [node]}))
    write(tmp_path / "b", "2.yaml", yaml.safe_dump({"resources": [web]}, default_flow_style=True))
    assert load_desired_dir(tmp_path / "b").version == base


def test_the_version_changes_with_any_spec_change(tmp_path: Path) -> None:
    base = load_desired_dir(write(tmp_path / "a", "f.yaml", WEB)).version
    changed = load_desired_dir(write(tmp_path / "b", "f.yaml", WEB.replace("3", "4"))).version
    assert base != changed


def test_ten_thousand_resources_load(tmp_path: Path) -> None:
    entry = (
        "  - kind: sim.Workload\n    name: w{i}\n"
        "    spec: {{replicas: 3, containers: [{{name: web, image: 'nginx:1.27'}}]}}\n"
        "    depends_on: [sim.Node/node-1]\n"
    )
    text = WEB + "".join(entry.format(i=i) for i in range(9998))
    assert len(load_desired_dir(write(tmp_path, "big.yaml", text)).resources) == 10_000


def test_find_cycles_reports_each_cycle_once_from_its_earliest_node() -> None:
    spec = {"a": "b", "b": "c", "c": "bd", "d": "", "e": "e", "f": "a", "g": "h", "h": "gg"}
    edges = {node: list(deps) for node, deps in spec.items()}
    assert find_cycles(edges) == [["b", "c"], ["e"], ["g", "h"]]
    assert find_cycles({"a": ["b"], "b": []}) == []


# --- property: generated valid desired states round-trip through YAML -----------------------

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
LABELS = st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), TEXT, max_size=3)


@st.composite
def containers(draw: st.DrawFn) -> dict[str, Any]:
    container: dict[str, Any] = {"name": draw(NAMES), "image": draw(TEXT.filter(bool))}
    if draw(st.booleans()):
        container["cpu"] = draw(st.integers(1, 64000))
    if draw(st.booleans()):
        container["env"] = draw(LABELS)
    return container


@st.composite
def workloads(draw: st.DrawFn, name: str, nodes: list[str]) -> dict[str, Any]:
    spec = {
        "replicas": draw(st.integers(0, 10000)),
        "containers": draw(
            st.lists(containers(), min_size=1, max_size=3, unique_by=lambda c: c["name"])
        ),
    }
    deps = draw(st.lists(st.sampled_from(nodes), unique=True)) if nodes else []
    return {
        "kind": "sim.Workload",
        "name": name,
        "spec": spec,
        "depends_on": [f"sim.Node/{d}" for d in deps],
        "sla": draw(st.sampled_from(["critical", "standard", "best_effort"])),
        "ignore_fields": draw(st.lists(st.sampled_from(["labels", "labels.tier"]), unique=True)),
        "tolerance": draw(st.dictionaries(st.just("replicas"), st.floats(0, 100))),
    }


@st.composite
def fleets(draw: st.DrawFn) -> list[dict[str, Any]]:
    nodes = draw(st.lists(NAMES, unique=True, max_size=5))
    names = draw(st.lists(NAMES, unique=True, min_size=1, max_size=5))
    zones = st.sampled_from(["zone-a", "zone-b"])
    resources: list[dict[str, Any]] = []
    for name in nodes:
        spec = {"zone": draw(zones), "labels": draw(LABELS)}
        resources.append({"kind": "sim.Node", "name": name, "spec": spec})
        if draw(st.booleans()):
            resources[-1]["protected"] = draw(st.booleans())
    return resources + [draw(workloads(name, nodes)) for name in names]


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same YAML value with every mapping's keys in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


def dump(folder: Path, resources: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        stale.unlink()
    (folder / "fleet.yaml").write_text(yaml.safe_dump({"resources": resources}, sort_keys=False))
    return folder


PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(fleet=fleets(), seed=st.integers(0, 2**32))
def test_a_generated_desired_state_loads_back_and_its_version_ignores_key_order(
    tmp_path: Path, fleet: list[dict[str, Any]], seed: int
) -> None:
    state = load_desired_dir(dump(tmp_path / "a", fleet))
    loaded = {str(r.key): r for r in state.resources}
    assert len(loaded) == len(fleet)
    for raw in fleet:
        got = loaded[f"{raw['kind']}/{raw['name']}"]
        model = REGISTRY[raw["kind"]].spec_model
        assert got.spec == model.model_validate(raw["spec"]).model_dump(mode="json")
        assert sorted(map(str, got.depends_on)) == sorted(raw.get("depends_on", []))
        assert got.sla == raw.get("sla", "standard")
        assert got.protected == raw.get("protected", False)
        assert list(got.ignore_fields) == raw.get("ignore_fields", [])
        assert got.tolerance == raw.get("tolerance", {})
    rng = random.Random(seed)
    reordered = shuffled(fleet, rng)
    rng.shuffle(reordered)
    assert load_desired_dir(dump(tmp_path / "b", reordered)).version == state.version


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.one_of(TEXT, st.integers(), st.booleans()), inner, max_size=3)
    ),
    max_leaves=12,
)
ENTRY_KEYS = st.sampled_from(["kind", "name", "spec", "depends_on", "sla", "protected", "x"])
ENTRIES = st.dictionaries(ENTRY_KEYS, st.one_of(VALUES, st.sampled_from(["sim.Node", "a/b"])))


@PROPERTY
@given(
    document=st.one_of(VALUES, st.fixed_dictionaries({"resources": st.lists(ENTRIES)}), st.binary())
)
def test_any_document_or_bytes_load_or_are_rejected_cleanly(tmp_path: Path, document: Any) -> None:
    path = tmp_path / "fuzz.yaml"
    if isinstance(document, bytes):
        path.write_bytes(document)
    else:
        path.write_text(yaml.safe_dump(document))
    try:
        load_desired_dir(path, allow_empty=isinstance(document, bytes))
    except InvalidDesiredState as error:
        assert error.problems and all(loc.file == str(path) for loc, _ in error.problems)
