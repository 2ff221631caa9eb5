"""Dependency layering: longest-path levels by Kahn's algorithm, and a readable cycle if any."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

__all__ = ["layer", "find_cycle", "VIRTUAL_PREFIX"]

VIRTUAL_PREFIX = "@"  # barrier nodes: ordering only, never a wave of their own


def layer(
    nodes: Sequence[str], deps: Mapping[str, Sequence[str]]
) -> tuple[dict[str, int], list[str]]:
    """Level of every real node (0 = no prerequisites) and a cycle if the graph has one.

    ``deps`` maps a node to its prerequisites; it may name virtual nodes (``@...``) that add
    ordering without taking a level. Nodes on or behind a cycle get no level.
    """
    graph = {n: list(deps.get(n, ())) for n in {*nodes, *deps}}
    for prereqs in list(graph.values()):
        for p in prereqs:
            graph.setdefault(p, [])
    waiting = {n: len(p) for n, p in graph.items()}
    dependants: dict[str, list[str]] = {n: [] for n in graph}
    for n, prereqs in graph.items():
        for p in prereqs:
            dependants[p].append(n)
    level: dict[str, int] = {}
    ready = deque(n for n, k in waiting.items() if k == 0)
    while ready:
        n = ready.popleft()
        base = max((level[p] for p in graph[n]), default=-1)
        level[n] = base if n.startswith(VIRTUAL_PREFIX) else base + 1
        for d in dependants[n]:
            waiting[d] -= 1
            if waiting[d] == 0:
                ready.append(d)
    cycle = find_cycle(graph, set(graph) - set(level)) if len(level) < len(graph) else []
    real = {n: lv for n, lv in level.items() if not n.startswith(VIRTUAL_PREFIX)}
    return real, cycle


def find_cycle(graph: Mapping[str, Sequence[str]], among: set[str]) -> list[str]:
    """One cycle among ``among`` (iterative DFS) as ``[a, b, ..., a]``, virtual nodes left out."""
    color: dict[str, int] = {}
    for start in sorted(among):
        if color.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                color[node] = 1
                path.append(node)
            nexts = [p for p in graph[node] if p in among]
            if i < len(nexts):
                stack.append((node, i + 1))
                nxt = nexts[i]
                if color.get(nxt) == 1:
                    loop = path[path.index(nxt):] + [nxt]
                    return [n for n in loop if not n.startswith(VIRTUAL_PREFIX)]
                if not color.get(nxt):
                    stack.append((nxt, 0))
            else:
                color[node] = 2
                path.pop()
    return []
