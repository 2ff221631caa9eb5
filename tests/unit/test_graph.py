"""graph: longest-path layering and cycle reporting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.graph import layer


def test_independent_nodes_share_level_zero():
    assert layer(["a", "b"], {}) == ({"a": 0, "b": 0}, [])


def test_virtual_nodes_order_without_taking_a_level():
    levels, _ = layer(["a", "b"], {"@k": ["a"], "b": ["@k"]})
    assert levels == {"a": 0, "b": 1}


def test_cycle_is_reported_as_a_path():
    levels, cycle = layer(["a", "b", "c"], {"a": ["b"], "b": ["a"]})
    assert levels == {"c": 0}
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b"}


def test_a_cycle_reads_in_dependency_order_from_its_smallest_node():
    _, cycle = layer(["c", "b", "a"], {"b": ["c"], "c": ["a"], "a": ["b"]})
    assert cycle == ["a", "b", "c", "a"]  # a depends on b, b on c, c on a


def test_a_cycle_through_a_virtual_node_names_only_real_nodes():
    levels, cycle = layer(["a", "b", "x"], {"a": ["@k"], "@k": ["b"], "b": ["a"], "x": ["a"]})
    assert cycle == ["a", "b", "a"] and levels == {}  # x waits behind the cycle


def test_a_self_dependency_is_a_cycle():
    assert layer(["a"], {"a": ["a"]}) == ({}, ["a", "a"])


@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 15)), max_size=40))
def test_every_edge_of_an_acyclic_graph_goes_up_a_level(edges):
    deps: dict[str, list[str]] = {}
    for a, b in edges:
        lo, hi = sorted((a, b))
        if lo != hi:
            deps.setdefault(f"n{hi}", []).append(f"n{lo}")  # only lower -> higher: acyclic
    nodes = [f"n{i}" for i in range(16)]
    levels, cycle = layer(nodes, deps)
    assert cycle == [] and set(levels) == set(nodes)
    assert all(levels[n] > levels[p] for n, ps in deps.items() for p in ps)
