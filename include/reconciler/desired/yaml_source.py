"""Desired state from a directory of YAML files, every error located by file, line and field."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictStr,
    ValidationError,
)

from reconciler.catalogue import kind_def, known_kinds
from reconciler.core.errors import InvalidDesiredState, SourceLocation
from reconciler.core.gcpause import gc_paused
from reconciler.core.graph import find_cycles
from reconciler.core.model import (
    DesiredResource,
    DesiredState,
    ResourceKey,
    SlaTier,
    content_hash,
)
from reconciler.desired.yamlread import (
    FieldPath,
    YamlDoc,
    dotted,
    parse_yaml,
    read_yaml,
    validation_problems,
)

__all__ = [
    "load_desired",
    "load_desired_dir",
    "load_desired_files",
    "desired_version",
    "NAME_PATTERN",
    "YAML_SUFFIXES",
]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
YAML_SUFFIXES = (".yaml", ".yml")
_EMPTY_HINT = "an empty desired state never means 'delete everything' (allow_empty to accept it)"

Problem = tuple[SourceLocation, str]
M = TypeVar("M", bound=BaseModel)


def _check_name(name: str) -> str:
    if NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(
            "name must be 1-63 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return name


def _check_kind(kind: str) -> str:
    if kind_def(kind) is None:
        raise ValueError(f"unknown kind {kind!r}; known kinds: {', '.join(known_kinds())} "
                         "(in a further region of a multi-region target: kind@region)")
    return kind


def _check_ref(text: str) -> str:
    kind, sep, name = text.partition("/")
    if not (sep and kind and name):
        raise ValueError(f"expected 'kind/name', got {text!r}")
    return text


def _check_field_path(text: str) -> str:
    if not text or any(not part for part in text.split(".")):
        raise ValueError(f"expected a dotted field path like 'labels.team', got {text!r}")
    return text


class _Entry(BaseModel):
    """The kind-independent part of a resource entry; the spec is checked by its kind's model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Annotated[StrictStr, AfterValidator(_check_kind)]
    name: Annotated[StrictStr, AfterValidator(_check_name)]
    spec: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[Annotated[StrictStr, AfterValidator(_check_ref)]] = Field(default_factory=list)
    sla: SlaTier = "standard"
    protected: StrictBool = False
    ignore_fields: list[Annotated[StrictStr, AfterValidator(_check_field_path)]] = Field(
        default_factory=list
    )
    tolerance: dict[StrictStr, Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )


@dataclass(frozen=True)
class _Declared:
    """A valid resource and where it was declared (for cross-resource checks)."""

    resource: DesiredResource
    refs: tuple[str, ...]
    doc: YamlDoc
    base: FieldPath

    def at(self, *path: str | int) -> SourceLocation:
        full = (*self.base, *path)
        return SourceLocation(self.doc.file, self.doc.line(full), dotted(full))

    @property
    def where(self) -> str:
        return f"{self.doc.file}:{self.doc.line(self.base)}"


def load_desired(
    source: str | Path, *, now: datetime | None = None, allow_empty: bool = False
) -> DesiredState:
    """Load a target's desired state from a folder/file path or an ``s3://bucket/prefix/``."""
    if str(source).startswith("s3://"):
        from reconciler.desired.s3_source import load_desired_s3

        return load_desired_s3(str(source), now=now, allow_empty=allow_empty)
    return load_desired_dir(source, now=now, allow_empty=allow_empty)


def load_desired_files(
    files: Iterable[tuple[str, bytes]],
    *,
    source_uri: str,
    version: str | None = None,
    now: datetime | None = None,
    allow_empty: bool = False,
) -> DesiredState:
    """Like ``load_desired_dir`` for files already read: ``(name, content)`` pairs.

    ``name`` is what errors and ``source_file`` show; ``version`` defaults to the content hash.
    """
    with gc_paused():
        problems: list[Problem] = []
        declared: list[_Declared] = []
        docs = [parse_yaml(data, name) for name, data in files]
        if not docs and not allow_empty:
            problems.append((SourceLocation(source_uri), f"no YAML files found; {_EMPTY_HINT}"))
        for doc in docs:
            declared.extend(_load_file(doc, allow_empty, problems))
        problems.extend(_cross_checks(declared))
        if problems:
            raise InvalidDesiredState(_distinct(problems))
        resources = tuple(sorted((d.resource for d in declared), key=_key_order))
        return DesiredState(
            resources=resources,
            version=version or desired_version(resources),
            source_uri=source_uri,
            loaded_at=now or datetime.now(UTC),
        )


def load_desired_dir(
    path: str | Path, *, now: datetime | None = None, allow_empty: bool = False
) -> DesiredState:
    """Load every ``*.yaml``/``*.yml`` file of a directory (or one file) into a DesiredState.

    Raises InvalidDesiredState carrying every problem found, each with file, line and field.
    """
    root = Path(path).resolve()
    with gc_paused():
        declared, problems = _load_all(root, allow_empty)
        if problems:
            raise InvalidDesiredState(_distinct(problems))
        resources = tuple(sorted((d.resource for d in declared), key=_key_order))
        return DesiredState(
            resources=resources,
            version=desired_version(resources),
            source_uri=str(root),
            loaded_at=now or datetime.now(UTC),
        )


def _load_all(root: Path, allow_empty: bool) -> tuple[list[_Declared], list[Problem]]:
    problems: list[Problem] = []
    declared: list[_Declared] = []
    files = _files(root, problems)
    if not files and not problems and not allow_empty:
        problems.append((SourceLocation(str(root)), f"no YAML files found; {_EMPTY_HINT}"))
    for file in files:
        declared.extend(_load_file(read_yaml(file), allow_empty, problems))
    problems.extend(_cross_checks(declared))
    return declared, problems


def desired_version(resources: tuple[DesiredResource, ...] | list[DesiredResource]) -> str:
    """Content hash of the resources, independent of order, formatting and source location."""
    exclude = {"source_file", "source_line"}
    ordered = sorted(resources, key=_key_order)
    canonical = [r.model_dump(mode="json", exclude=exclude) for r in ordered]
    return content_hash(canonical)


def _key_order(resource: DesiredResource) -> tuple[str, str]:
    return (resource.key.kind, resource.key.name)


def _problem_order(problem: Problem) -> tuple[str, int]:
    return (problem[0].file, problem[0].line or 0)


def _distinct(problems: list[Problem]) -> list[Problem]:
    """In file and line order, each problem once (two bad items of one merge say it twice)."""
    return sorted(dict.fromkeys(problems), key=_problem_order)


def _files(root: Path, problems: list[Problem]) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        problems.append((SourceLocation(str(root)), "no such file or directory"))
        return []
    # Dotfiles are editor backups and lock files, never part of the declared state.
    return sorted(
        p
        for p in root.iterdir()
        if p.suffix in YAML_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _load_file(doc: YamlDoc, allow_empty: bool, problems: list[Problem]) -> list[_Declared]:
    problems.extend(_located(doc, p.path, p.message, p.line) for p in doc.problems)
    if doc.empty and not allow_empty:
        problems.append((SourceLocation(doc.file), f"file is empty; {_EMPTY_HINT}"))
    if doc.value is None:
        return []
    entries = _entries(doc, problems)
    if entries == [] and not allow_empty:
        problems.append(_located(doc, ("resources",), f"declares no resources; {_EMPTY_HINT}"))
    declared = []
    for index, raw in enumerate(entries or []):
        found = _resource(doc, index, raw, problems)
        if found is not None:
            declared.append(found)
    return declared


def _located(doc: YamlDoc, path: FieldPath, message: str, line: int | None = None) -> Problem:
    where = line if line is not None else doc.line(path)
    return (SourceLocation(doc.file, where, dotted(path) or None), message)


def _entries(doc: YamlDoc, problems: list[Problem]) -> list[Any] | None:
    """The ``resources`` list of a file, or None (with a problem) when the layout is wrong."""
    top = doc.value
    if not isinstance(top, dict):
        problems.append(_located(doc, (), "top level must be a mapping with a 'resources' list"))
        return None
    for key in top:
        if key != "resources":
            message = f"unknown top-level key {key!r}; expected only 'resources'"
            problems.append(_located(doc, (str(key),), message))
    if "resources" not in top:
        problems.append(_located(doc, (), "missing top-level key 'resources'"))
        return None
    entries = top["resources"]
    if entries is None:
        return []
    if not isinstance(entries, list):
        problems.append(_located(doc, ("resources",), "'resources' must be a list"))
        return None
    return entries


def _resource(doc: YamlDoc, index: int, raw: Any, problems: list[Problem]) -> _Declared | None:
    base: FieldPath = ("resources", index)
    if not isinstance(raw, dict):
        problems.append(_located(doc, base, "each resource must be a mapping"))
        return None
    entry = _validated(_Entry, raw, doc, base, problems)
    spec = _spec(raw, doc, base, problems)
    if entry is None or spec is None:
        return None
    unknown = _unknown_fields(entry)
    if unknown:
        problems.extend(_located(doc, (*base, *path), message) for path, message in unknown)
        return None
    line = doc.line(base)
    resource = DesiredResource(
        key=ResourceKey(kind=entry.kind, name=entry.name),
        spec=spec,
        depends_on=tuple(ResourceKey.parse(d) for d in sorted(set(entry.depends_on))),
        sla=entry.sla,
        protected=entry.protected,
        ignore_fields=tuple(entry.ignore_fields),
        tolerance=entry.tolerance,
        source_file=doc.file,
        source_line=line,
    )
    return _Declared(resource, tuple(entry.depends_on), doc, base)


def _unknown_fields(entry: _Entry) -> list[tuple[FieldPath, str]]:
    """``ignore_fields`` and ``tolerance`` paths whose first part is no field of the kind's
    spec: a typo there would silently compare (or tolerate) nothing."""
    found = kind_def(entry.kind)
    known = set(found.spec_model.model_fields) if found is not None else set()
    named: list[tuple[FieldPath, str]] = [(("ignore_fields", i), p)
                                          for i, p in enumerate(entry.ignore_fields)]
    named += [(("tolerance", p), p) for p in entry.tolerance]
    return [(where, f"{path.split('.')[0]!r} is not a field of {entry.kind} (its fields: "
             f"{', '.join(sorted(known))})")
            for where, path in named if path.split(".")[0] not in known]


def _spec(raw: dict[Any, Any], doc: YamlDoc, base: FieldPath, problems: list[Problem]) -> Any:
    """The spec validated by its kind's model and normalised to JSON, or None if invalid."""
    kind = raw.get("kind")
    found = kind_def(kind) if isinstance(kind, str) else None
    spec = raw.get("spec", {})
    if found is None or not isinstance(spec, dict):
        return None
    model = _validated(found.spec_model, spec, doc, (*base, "spec"), problems)
    return None if model is None else model.model_dump(mode="json")


def _validated(
    model: type[M], raw: Any, doc: YamlDoc, base: FieldPath, problems: list[Problem]
) -> M | None:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        found = validation_problems(exc, base, raw)
        # a value the reader already refused (an unsupported tag) reached the model as None:
        # its type error says nothing more
        refused = [p.path for p in doc.problems]
        problems.extend(_located(doc, path, msg) for path, msg in found
                        if not any(path[:len(r)] == r for r in refused))
        return None


def _cross_checks(declared: list[_Declared]) -> list[Problem]:
    """Problems that need every file: duplicate keys, unknown dependencies, cycles."""
    by_key: dict[ResourceKey, _Declared] = {}
    problems: list[Problem] = []
    for item in declared:
        key = item.resource.key
        first = by_key.setdefault(key, item)
        if first is not item:
            message = f"duplicate resource {key}: already declared at {first.where}"
            problems.append((item.at("name"), message))
    problems.extend(_unknown_dependencies(declared, by_key))
    problems.extend(_cycles(by_key))
    return problems


def _unknown_dependencies(
    declared: list[_Declared], by_key: dict[ResourceKey, _Declared]
) -> list[Problem]:
    problems: list[Problem] = []
    for item in declared:
        for index, ref in enumerate(item.refs):
            if ResourceKey.parse(ref) not in by_key:
                problems.append((item.at("depends_on", index), f"{ref} is not declared"))
    return problems


def _cycles(by_key: dict[ResourceKey, _Declared]) -> list[Problem]:
    # Plain string nodes: hashing frozen pydantic keys dominates the graph walk otherwise.
    items = {str(key): item for key, item in by_key.items()}
    edges = {node: [str(d) for d in item.resource.depends_on] for node, item in items.items()}
    problems: list[Problem] = []
    for cycle in find_cycles(edges):
        first = items[cycle[0]]
        text = " -> ".join((*cycle, cycle[0]))
        field = dotted((*first.base, "depends_on"))
        location = SourceLocation(first.doc.file, first.doc.line(first.base), field)
        problems.append((location, f"dependency cycle: {text}"))
    return problems
