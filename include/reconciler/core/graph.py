"""Dependency layering: longest-path levels by Kahn's algorithm, and readable cycles."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

__all__ = ["layer", "find_cycle", "find_cycles", "VIRTUAL_PREFIX"]

K = TypeVar("K", bound=Hashable)

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


def find_cycles(edges: Mapping[K, Sequence[K]]) -> list[list[K]]:
    """Dependency cycles, each starting at its earliest node in ``edges`` order.

    Nodes that cannot reach a cycle are peeled off first (repeatedly removing nodes with no
    remaining dependencies); from any node left, following dependencies must enter a cycle.
    Each cycle found is removed in turn, so every node is visited a bounded number of times.
    """
    order = {node: position for position, node in enumerate(edges)}
    succ = {node: [d for d in dict.fromkeys(deps) if d in order] for node, deps in edges.items()}
    parents: dict[K, list[K]] = {node: [] for node in edges}
    for node, deps in succ.items():
        for dep in deps:
            parents[dep].append(node)
    degree = {node: len(deps) for node, deps in succ.items()}
    alive = set(edges)

    def drop(nodes: Iterable[K]) -> None:
        queue = list(nodes)
        while queue:
            node = queue.pop()
            if node in alive:
                alive.discard(node)
                for parent in parents[node]:
                    degree[parent] -= 1
                    if degree[parent] == 0:
                        queue.append(parent)

    drop(node for node, count in degree.items() if count == 0)
    cycles: list[list[K]] = []
    for start in edges:
        while start in alive:
            cycle = _walk_to_cycle(start, succ, alive)
            earliest = min(range(len(cycle)), key=lambda i: order[cycle[i]])
            cycles.append(cycle[earliest:] + cycle[:earliest])
            drop(cycle)
    return cycles


def _walk_to_cycle(start: K, succ: Mapping[K, list[K]], alive: set[K]) -> list[K]:
    # Every live node has a live dependency, so the walk revisits a node within len(alive) steps.
    seen: dict[K, int] = {}
    path: list[K] = []
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(dep for dep in succ[node] if dep in alive)
    return path[seen[node] :]
