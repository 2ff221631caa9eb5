"""Compose a YAML node graph from the parser's events, refusing hostile input as it streams in.

PyYAML's composers recurse once per nesting level: the C one (6.0.3) segfaults on 40,000 nested
``[`` and the pure-Python one raises RecursionError after minutes of scanning. This composer
keeps an explicit stack and checks depth, node count and scalar length on every event, so a
hostile file stops after a few events, whatever PyYAML version or parser is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import yaml
from yaml.composer import ComposerError
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["EventLimits", "EVENT_LIMITS", "LimitExceeded", "compose_bounded"]

_COLLECTIONS: dict[type, type[SequenceNode] | type[MappingNode]] = {
    SequenceStartEvent: SequenceNode,
    MappingStartEvent: MappingNode,
}


@dataclass(frozen=True)
class EventLimits:
    """Bounds checked on the event stream, before any value is built."""

    depth: int = 64  # desired state needs ~8 (resources[i].spec.containers[j].env.NAME)
    nodes: int = 1_000_000  # ~8 MB of typical desired state, ~600 MB once built; split files
    scalar: int = 1024 * 1024  # characters; EC2 user data, the largest real value, is 16 KiB


EVENT_LIMITS = EventLimits()


class LimitExceeded(Exception):
    """The document is over a limit: 1-based line, field path (up to 8 parts) and why."""

    def __init__(self, line: int, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.line = line
        self.path = path
        self.message = message


class _Frame:
    """A collection being composed and the children read so far (keys and values interleaved)."""

    __slots__ = ("node", "items")

    def __init__(self, node: SequenceNode | MappingNode) -> None:
        self.node = node
        self.items: list[Node] = []


def compose_bounded(
    text: str, loader_class: type[yaml.SafeLoader], limits: EventLimits = EVENT_LIMITS
) -> Node | None:
    """The single document's root node (None for an empty stream), like ``yaml.compose``.

    Raises yaml.YAMLError for syntax errors and LimitExceeded for a document over ``limits``.
    """
    loader: Any = loader_class(text)  # untyped in types-PyYAML
    try:
        loader.get_event()  # stream start
        if isinstance(loader.peek_event(), StreamEndEvent):
            return None
        start = loader.get_event()  # document start
        root = _Composer(loader, limits).root()
        loader.get_event()  # document end
        after = loader.get_event()
        if not isinstance(after, StreamEndEvent):
            raise ComposerError("expected a single document in the stream", start.start_mark,
                                "but found another document", after.start_mark)
        return root
    finally:
        loader.dispose()


class _Composer:
    """One document: events in, nodes out, limits checked per event."""

    def __init__(self, loader: Any, limits: EventLimits) -> None:
        self.loader = loader
        self.limits = limits
        self.max_nodes = limits.nodes
        self.anchors: dict[str, Node] = {}
        self.stack: list[_Frame] = []
        self.nodes = 0
        # Plain scalars repeat (kinds, pools, images): resolve each distinct text once; an
        # untagged collection's tag depends only on its kind (the safe loaders set no paths).
        self.plain_tags: dict[str, str] = {}
        self.collection_tags = {k: loader.resolve(k, None, True) for k in _COLLECTIONS.values()}

    def root(self) -> Node:
        get_event, stack, plain_tags = self.loader.get_event, self.stack, self.plain_tags
        max_scalar = self.limits.scalar
        while True:
            event = get_event()
            kind = type(event)
            # The hot path, inlined: a plain scalar without anchor is most of any document.
            if kind is ScalarEvent and event.tag is None and event.anchor is None:
                self.nodes += 1
                value = event.value
                tag = plain_tags.get(value) if event.implicit[0] else None
                if tag is None or self.nodes > self.max_nodes or len(value) > max_scalar:
                    tag = self.checked_tag(event)
                node: Node = ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
            elif kind is SequenceEndEvent or kind is MappingEndEvent:
                node = self.close(event)
            else:
                found = self.other(event, kind)
                if found is None:
                    continue
                node = found
            if not stack:
                return node
            stack[-1].items.append(node)

    def other(self, event: Any, kind: type) -> Node | None:
        """A collection start (None: its items come next), an alias or a tagged scalar."""
        if kind is SequenceStartEvent or kind is MappingStartEvent:
            self.open(event)
            return None
        if kind is AliasEvent:
            return self.alias(event)
        if kind is ScalarEvent:
            self.nodes += 1
            return self.scalar(event)
        # the parser ends a document only once every collection is closed
        raise ComposerError(None, None, f"unexpected {kind.__name__}", event.start_mark)

    def checked_tag(self, event: Any) -> str:
        if self.nodes > self.max_nodes or len(event.value) > self.limits.scalar:
            self.over_limit(event)
        return self.scalar_tag(event.value, event.implicit)

    def scalar(self, event: Any) -> ScalarNode:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.checked_tag(event)
        elif self.nodes > self.max_nodes or len(event.value) > self.limits.scalar:
            self.over_limit(event)
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        if event.anchor is not None:
            self.anchor(event, node)
        return node

    def scalar_tag(self, value: str, implicit: tuple[bool, bool]) -> str:
        if not implicit[0]:
            return str(self.loader.resolve(ScalarNode, value, implicit))
        tag = self.plain_tags.get(value)
        if tag is None:
            tag = self.plain_tags[value] = self.loader.resolve(ScalarNode, value, implicit)
        return tag

    def open(self, event: Any) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes or len(self.stack) >= self.limits.depth:
            self.over_limit(event)
        kind = _COLLECTIONS[type(event)]
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.collection_tags[kind]
        node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if event.anchor is not None:
            self.anchor(event, node)
        self.stack.append(_Frame(node))

    def close(self, event: Any) -> Node:
        frame = self.stack.pop()
        items, node = frame.items, frame.node
        if isinstance(node, SequenceNode):
            node.value = items
        else:  # keys and values were read in turn
            node.value = list(zip(items[::2], items[1::2], strict=True))
        node.end_mark = event.end_mark
        return node

    def alias(self, event: Any) -> Node:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            self.over_limit(event)
        if event.anchor not in self.anchors:
            raise ComposerError(None, None, f"found undefined alias {event.anchor!r}",
                                event.start_mark)
        return self.anchors[event.anchor]

    def anchor(self, event: Any, node: Node) -> None:
        name = event.anchor
        if name in self.anchors:
            raise ComposerError(f"found duplicate anchor {name!r}; first occurrence",
                                self.anchors[name].start_mark, "second occurrence",
                                event.start_mark)
        self.anchors[name] = node

    def over_limit(self, event: Any) -> NoReturn:
        if self.nodes > self.max_nodes:
            message = f"over {self.max_nodes} YAML nodes in one file; split it"
        elif isinstance(event, ScalarEvent):
            message = (f"a value of {len(event.value)} characters, "
                       f"over the {self.limits.scalar}-character limit")
        else:
            message = f"nested deeper than {self.limits.depth} levels"
        raise LimitExceeded(event.start_mark.line + 1, self.path()[:8], message)

    def path(self) -> tuple[str | int, ...]:
        """Where the event being read sits: a mapping key read last, or a sequence index."""
        path: list[str | int] = []
        for frame in self.stack:
            items = frame.items
            if isinstance(frame.node, SequenceNode):
                path.append(len(items))
            elif len(items) % 2:
                key = items[-1]
                path.append(str(key.value) if isinstance(key, ScalarNode) else "?")
        return tuple(path)
