"""Dependency layering (longest-path levels, by the stdlib's graphlib) and readable cycles."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from graphlib import CycleError, TopologicalSorter
from typing import TypeVar

__all__ = ["layer", "find_cycles", "VIRTUAL_PREFIX"]

K = TypeVar("K", bound=Hashable)

VIRTUAL_PREFIX = "@"  # barrier nodes: ordering only, never a wave of their own


def layer(
    nodes: Sequence[str], deps: Mapping[str, Sequence[str]]
) -> tuple[dict[str, int], list[str]]:
    """Level of every real node (0 = no prerequisites) and a cycle if the graph has one.

    ``deps`` maps a node to its prerequisites; it may name virtual nodes (``@...``) that add
    ordering without taking a level. Nodes on or behind a cycle get no level. The cycle reads
    in dependency order, ``a -> b -> ... -> a`` with each node depending on the next.
    """
    graph = {n: deps.get(n, ()) for n in nodes}
    graph.update(deps)
    sorter = TopologicalSorter(graph)
    cycle: list[str] = []
    try:
        sorter.prepare()
    except CycleError as error:
        # graphlib lists each node before its dependant: reverse to read "depends on"
        cycle = _readable(list(reversed(error.args[1][1:])))
    level: dict[str, int] = {}
    ready = sorter.get_ready()
    while ready:  # ends: each round settles nodes for good; what a cycle blocks never gets ready
        for n in ready:
            base = max([level[p] for p in graph.get(n, ())], default=-1)
            level[n] = base if n.startswith(VIRTUAL_PREFIX) else base + 1
        sorter.done(*ready)
        ready = sorter.get_ready()
    real = {n: lv for n, lv in level.items() if not n.startswith(VIRTUAL_PREFIX)}
    return real, cycle


def _readable(loop: list[str]) -> list[str]:
    """A cycle's real nodes from its smallest, closed: ``[a, b, c, a]`` (same input, same text)."""
    real = [n for n in loop if not n.startswith(VIRTUAL_PREFIX)] or loop
    first = real.index(min(real))
    return [*real[first:], *real[:first], real[first]]


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
