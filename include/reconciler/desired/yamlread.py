"""Bounded, line-tracking YAML reader: plain values plus the 1-based line of every key and item."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from yaml.constructor import SafeConstructor

from reconciler.core.gcpause import gc_paused
from reconciler.desired.yamlcompose import EVENT_LIMITS, EventLimits, LimitExceeded, compose_bounded

__all__ = [
    "FieldPath",
    "YamlProblem",
    "YamlDoc",
    "MAX_BYTES",
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "EVENT_LIMITS",
    "EventLimits",
    "read_yaml",
    "parse_yaml",
    "dotted",
    "line_of",
    "validation_problems",
]

FieldPath = tuple[str | int, ...]

MAX_BYTES = 10 * 1024 * 1024
MAX_ALIAS_NODES = 200_000
MAX_DEPTH = EVENT_LIMITS.depth

# The C parser is the same safe loader, several times faster; fall back when libyaml is absent.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
_MERGE = _TAG + "merge"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("null", "bool", "int", "float", "str", "timestamp"))
_COLLECTION_TAGS = frozenset({_TAG + "map", _TAG + "seq"})
# fields whose values are never echoed in an error: container environments
_SECRET_PARTS = frozenset({"environment", "env"})


@dataclass(frozen=True)
class YamlProblem:
    """One problem found while reading: 1-based line (if known), field path, message."""

    line: int | None
    path: FieldPath
    message: str


# A dataclass, not a pydantic model: the line table can hold hundreds of thousands of entries.
@dataclass(frozen=True)
class YamlDoc:
    """A parsed file: its value (None if empty or unreadable), line table and problems."""

    file: str
    value: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)
    problems: tuple[YamlProblem, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the file holds no document at all (empty, or only comments)."""
        return self.value is None and not self.problems

    def line(self, path: FieldPath) -> int | None:
        return line_of(self.lines, path)


class _Abort(Exception):
    """Stops building: the document is unusable (alias bomb, nesting too deep)."""

    def __init__(self, problem: YamlProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def read_yaml(
    path: Path,
    *,
    max_bytes: int = MAX_BYTES,
    max_alias_nodes: int = MAX_ALIAS_NODES,
    limits: EventLimits = EVENT_LIMITS,
) -> YamlDoc:
    """Read and parse one file, refusing oversized files before reading them."""
    file = str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return _failed(file, None, f"file is {size} bytes, over the {max_bytes}-byte limit")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        return _failed(file, None, f"cannot read file: {exc.strerror or exc}")
    return parse_yaml(data, file, max_bytes=max_bytes, max_alias_nodes=max_alias_nodes,
                      limits=limits)


def parse_yaml(
    data: bytes,
    file: str,
    *,
    max_bytes: int = MAX_BYTES,
    max_alias_nodes: int = MAX_ALIAS_NODES,
    limits: EventLimits = EVENT_LIMITS,
) -> YamlDoc:
    """Parse UTF-8 bytes into plain values, rejecting duplicate keys, alias bombs and documents
    over ``limits`` (nesting, node count, value length: checked before anything is built)."""
    if len(data) > max_bytes:
        return _failed(file, None, f"file is over the {max_bytes}-byte limit")
    text = _decode(data, file)
    if isinstance(text, YamlDoc):
        return text
    with gc_paused():
        node = _compose(text, file, limits)
        if isinstance(node, YamlDoc):
            return node
        if node is None:
            return YamlDoc(file, None)
        return _Builder(file, max_alias_nodes, limits.depth).build(node)


def _failed(file: str, line: int | None, message: str) -> YamlDoc:
    return YamlDoc(file, None, problems=(YamlProblem(line, (), message),))


def _decode(data: bytes, file: str) -> str | YamlDoc:
    encoding = "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start]
        return _failed(file, line, f"not valid UTF-8: byte 0x{bad:02x} at offset {exc.start}")


def _compose(text: str, file: str, limits: EventLimits) -> yaml.Node | YamlDoc | None:
    try:
        return compose_bounded(text, _LOADER, limits)
    except LimitExceeded as exc:
        return YamlDoc(file, None, problems=(YamlProblem(exc.line, exc.path, exc.message),))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        context = exc.context or ""
        if context and exc.context_mark is not None and exc.context_mark.line + 1 != line:
            context += f" (from line {exc.context_mark.line + 1})"
        what = " ".join(p for p in (context, exc.problem) if p)
        if "maximum nesting depth" in what:  # libyaml's own limit, met before ours in a lookahead
            return _failed(file, line, f"nested deeper than {limits.depth} levels")
        if "tab" in what or "'\\t'" in what:
            what += " (indent YAML with spaces, never tabs)"
        return _failed(file, line, f"YAML syntax error: {what}")
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        return _failed(file, line, f"YAML syntax error: character {exc.character!r} not allowed")
    except yaml.YAMLError as exc:
        return _failed(file, None, f"YAML syntax error: {exc}")


class _Builder:
    """Turns a composed node graph into dicts/lists/scalars, recording lines and problems."""

    def __init__(self, file: str, max_alias_nodes: int, max_depth: int) -> None:
        self.file = file
        self.max_alias_nodes = max_alias_nodes
        self.max_depth = max_depth  # reached only through aliases: the composer checked the rest
        self.lines: dict[FieldPath, int] = {}
        self.problems: list[YamlProblem] = []
        self.seen: set[int] = set()
        self.expanded = 0
        self.alias_path: FieldPath = ()
        self.constructor = SafeConstructor()

    def build(self, root: yaml.Node) -> YamlDoc:
        self.lines[()] = root.start_mark.line + 1
        try:
            value = self.value(root, (), 0, False)
        except _Abort as abort:
            return YamlDoc(self.file, None, problems=(*self.problems, abort.problem))
        return YamlDoc(self.file, value, self.lines, tuple(self.problems))

    def abort(self, node: yaml.Node, path: FieldPath, expanding: bool, message: str) -> NoReturn:
        if not expanding:
            # Keep the reported field readable: a 100-level path says nothing more than 8.
            raise _Abort(YamlProblem(node.start_mark.line + 1, path[:8], message))
        # Inside an alias, node lines point at the anchor; blame where the alias is used:
        # a mapping key's line, or the line of the sequence holding the alias.
        where = self.alias_path
        line = self.lines.get(where if where and isinstance(where[-1], str) else where[:-1])
        raise _Abort(YamlProblem(line, where, message))

    def problem(self, node: yaml.Node, path: FieldPath, message: str) -> None:
        self.problems.append(YamlProblem(node.start_mark.line + 1, path, message))

    def value(self, node: yaml.Node, path: FieldPath, depth: int, expanding: bool) -> Any:
        if not expanding and isinstance(node, yaml.ScalarNode):
            # Only collections can multiply: a scalar reached through an alias is one value.
            return self.scalar(node, path)
        # A node met a second time is reached through an alias: count what it expands to.
        if not expanding and id(node) in self.seen:
            expanding = True
            self.alias_path = path
        self.seen.add(id(node))
        if expanding:
            self.expanded += 1
            if self.expanded > self.max_alias_nodes:
                too_many = f"aliases expand to over {self.max_alias_nodes} nodes"
                self.abort(node, path, expanding, too_many)
        if depth > self.max_depth:
            self.abort(node, path, expanding, f"nested deeper than {self.max_depth} levels")
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth, expanding)
        if isinstance(node, yaml.SequenceNode):
            return self.sequence(node, path, depth, expanding)
        return self.scalar(node, path)

    def sequence(self, node: yaml.SequenceNode, path: FieldPath, depth: int, exp: bool) -> Any:
        if node.tag not in _COLLECTION_TAGS:
            self.problem(node, path, f"unsupported YAML tag {node.tag!r}")
        items: list[Any] = []
        for index, child in enumerate(node.value):
            child_path = (*path, index)
            self.lines[child_path] = child.start_mark.line + 1
            items.append(self.value(child, child_path, depth + 1, exp))
        return items

    def mapping(self, node: yaml.MappingNode, path: FieldPath, depth: int, exp: bool) -> Any:
        if node.tag not in _COLLECTION_TAGS:
            self.problem(node, path, f"unsupported YAML tag {node.tag!r}")
        out: dict[Any, Any] = {}
        merges = [value for key, value in node.value if key.tag == _MERGE]
        # Merged keys first (the first merge source wins), then explicit keys override them.
        for source in reversed(merges):
            self.merge(out, source, path, depth, exp)
        explicit: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                self.entry(out, explicit, key_node, value_node, path, depth, exp)
        return out

    def entry(
        self,
        out: dict[Any, Any],
        explicit: set[Any],
        key_node: yaml.Node,
        value_node: yaml.Node,
        path: FieldPath,
        depth: int,
        exp: bool,
    ) -> None:
        if not isinstance(key_node, yaml.ScalarNode):
            self.problem(key_node, path, "mapping keys must be plain scalars")
            return
        key = self.scalar(key_node, path)
        key_path = (*path, str(key))
        if key in explicit:
            first = self.lines.get(key_path)
            self.problem(key_node, key_path, f"duplicate key {key!r} (first at line {first})")
            return
        explicit.add(key)
        self.lines[key_path] = key_node.start_mark.line + 1
        out[key] = self.value(value_node, key_path, depth + 1, exp)

    def merge(
        self, out: dict[Any, Any], source: yaml.Node, path: FieldPath, depth: int, exp: bool
    ) -> None:
        sources = source.value if isinstance(source, yaml.SequenceNode) else [source]
        for item in reversed(sources):
            if not isinstance(item, yaml.MappingNode):
                self.problem(item, path, "'<<' merges only a mapping or a list of mappings")
                continue
            out.update(self.value(item, path, depth, exp))

    def scalar(self, node: yaml.Node, path: FieldPath) -> Any:
        if node.tag == _STR:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            self.problem(node, path, f"unsupported YAML tag {node.tag!r}")
            return None
        try:
            return self.constructor.yaml_constructors[node.tag](self.constructor, node)
        except (ValueError, KeyError, yaml.YAMLError):
            self.problem(node, path, f"{node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}")
            return None


def dotted(path: FieldPath) -> str:
    """``("resources", 2, "spec", "replicas")`` -> ``resources[2].spec.replicas``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def line_of(lines: dict[FieldPath, int], path: FieldPath) -> int | None:
    """The line of ``path``, else of its nearest ancestor present in the table."""
    for end in range(len(path), -1, -1):
        found = lines.get(path[:end])
        if found is not None:
            return found
    return None


def validation_problems(
    error: ValidationError, base: FieldPath, value: Any = None
) -> list[tuple[FieldPath, str]]:
    """A pydantic error as (field path under ``base``, message) pairs, one per failure.

    With ``value``, the input that was validated, each path is walked in it: a dict key stays a
    key (``labels.1``, not ``labels[1]``), and the tag pydantic adds for a member of a union
    (``RateLimit``, ``constrained-float``) is dropped, the members' complaints joined by "or".
    """
    out: list[tuple[FieldPath, str]] = []
    alternatives: dict[FieldPath, list[str]] = {}
    for detail in error.errors(include_url=False):
        path, union = _loc(detail, value)
        message = _message(detail, secret=bool(_SECRET_PARTS.intersection(path)))
        if detail["loc"][-1:] == ("[key]",):  # a mapping key, not its value, is wrong
            message = f"key {detail['input']!r}: {detail['msg']}"
        if not union:
            out.append((base + path, message))
        elif base + path not in alternatives:
            alternatives[base + path] = [message]
            out.append((base + path, ""))
        elif message not in alternatives[base + path]:
            alternatives[base + path].append(message)
    return [(p, m or "; or ".join(alternatives[p])) for p, m in out]


def _loc(detail: ErrorDetails, value: Any) -> tuple[FieldPath, bool]:
    """The failure's path in the input, and whether a union member's tag was dropped from it."""
    parts = list(detail["loc"])
    key: tuple[str, ...] = ()
    if parts[-1:] == ["[key]"]:  # (..., the key as pydantic prints it, "[key]")
        parts, key = parts[:-2], (str(detail["input"]),)
    if value is None:
        return (*(p if isinstance(p, int) else str(p) for p in parts), *key), False
    path: list[str | int] = []
    union, here = False, value
    for index, part in enumerate(parts):
        if isinstance(here, dict) and part in here:
            path.append(str(part))
            here = here[part]
        elif isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here):
            path.append(part)
            here = here[part]
        elif index == len(parts) - 1 and detail["type"] == "missing":
            path.append(str(part))  # a field left out: not in the input, but a real place
        else:
            union = True  # not a place in the input: the tag of a union member
    return (*path, *key), union


def _message(detail: ErrorDetails, secret: bool = False) -> str:
    kind = detail["type"]
    if kind == "extra_forbidden":
        return f"unknown field {str(detail['loc'][-1])!r}"
    if kind == "missing":
        return "field required"
    message = detail["msg"].removeprefix("Value error, ")
    given = detail.get("input")
    if kind == "string_type" and isinstance(given, bool | int | float | date):
        # YAML read an unquoted yes, 8080 or 2027-01-01 as a boolean, a number or a date
        what = ("a boolean (yes, no, on, off, true, false)" if isinstance(given, bool) else
                "a date" if isinstance(given, date) else "a number")
        return f"{message}: YAML read {'it' if secret else given} as {what}; quote it"
    # Echo only non-string scalars, and none at all of a value that may be secret (strings may
    # be secrets anywhere: options; a container's environment is secret whatever its type).
    if not secret and (isinstance(given, bool | int | float) or given is None):
        return f"{message} (got {given!r})"
    return message
