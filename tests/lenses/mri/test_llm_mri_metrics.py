"""LLM-MRI's graph metrics in graph_metrics, each against a direct networkx / numpy / scipy computation: per-layer
and graph-level degree and strength moments of the nodes that have an edge, weighted assortativity, centres of mass
and strength (and their relation to the reference's formula), one category's graph, the even- and odd-layer
collaboration-weighted projections; on a planted layered graph, a component-like graph, a real co-activation graph
and degenerate graphs."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from networkx.algorithms import bipartite
from scipy import stats

from mri_lens.lenses import mri as mg

from .builders import random_maps

# (source, target, weight_a, weight_b) of the planted graph: 4 layers of 3 nodes, weight = weight_a + weight_b.
# Node (1, 2) and (3, 2) have no edge; (2, 2) -> (3, 1) carries only category b.
PLANTED = [((0, 0), (1, 0), 3, 1), ((0, 0), (1, 1), 1, 0), ((0, 1), (1, 1), 2, 2), ((0, 2), (1, 0), 0, 1),
           ((1, 0), (2, 0), 4, 0), ((1, 0), (2, 1), 1, 1), ((1, 1), (2, 1), 2, 3), ((1, 1), (2, 2), 1, 0),
           ((2, 0), (3, 0), 2, 0), ((2, 1), (3, 0), 1, 2), ((2, 2), (3, 1), 0, 5)]


def planted(layers=(0, 1, 2, 3), float_weights=False):
    """The planted layered DiGraph; node ids ``(position, i)``, node attribute ``layer`` = ``layers[position]``."""
    g = nx.DiGraph(layers=list(layers), categories=["a", "b"], category_sizes={"a": 6, "b": 7}, n_docs=13)
    for p, layer in enumerate(layers):
        for i in range(3):
            g.add_node((p, i), layer=layer, docs=i + 1, docs_a=i, docs_b=1)
    scale = 0.1 if float_weights else 1
    for u, v, a, b in PLANTED:
        g.add_edge(u, v, weight=(a + b) * scale, weight_a=a * scale, weight_b=b * scale)
    return g


def linked(g):
    return [u for u in g if g.degree(u) > 0]


def value(m, key):
    return m.summary["value"][key]


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) if isinstance(a, float) and math.isnan(a) else a == pytest.approx(b)


# ------------------------------------------------------------------------------------- per layer, whole graph


def test_layer_degree_and_strength_match_numpy():
    g = planted()
    layers = mg.graph_metrics(g).layers.set_index("layer")
    for layer in range(4):
        nodes = [u for u in linked(g) if g.nodes[u]["layer"] == layer]
        deg = np.array([g.degree(u) for u in nodes], dtype=float)
        st = np.array([g.degree(u, weight="weight") for u in nodes], dtype=float)
        row = layers.loc[layer]
        assert row["degree_mean"] == pytest.approx(deg.mean()) and row["degree_var"] == pytest.approx(deg.var(ddof=1))
        assert row["strength_mean"] == pytest.approx(st.mean())
        assert row["strength_var"] == pytest.approx(st.var(ddof=1))
    # The isolated node of layer 1 is left out: its three nodes would give another mean.
    assert layers.loc[1, "degree_mean"] == pytest.approx((4 + 4) / 2)
    assert layers.loc[1, "nodes"] == 3  # the existing columns still count every node


def test_summary_moments_assortativity_density_match_scipy_networkx():
    g = planted()
    m = mg.graph_metrics(g)
    nodes = linked(g)
    assert len(nodes) == 10
    for name, x in (("degree", [g.degree(u) for u in nodes]), ("strength", [g.degree(u, weight="weight")
                                                                           for u in nodes])):
        x = np.array(x, dtype=float)
        assert value(m, f"{name}_mean") == pytest.approx(x.mean())
        assert value(m, f"{name}_var") == pytest.approx(x.var(ddof=1))
        assert value(m, f"{name}_skew") == pytest.approx(stats.skew(x, bias=False))
        assert value(m, f"{name}_kurtosis") == pytest.approx(stats.kurtosis(x, bias=False))
        assert value(m, f"{name}_kurtosis") == pytest.approx(pd.Series(x).kurt())
    assert value(m, "assortativity_weighted") == pytest.approx(nx.degree_assortativity_coefficient(g, weight="weight"))
    assert value(m, "assortativity_weighted") != pytest.approx(nx.degree_assortativity_coefficient(g))
    assert value(m, "density_non_isolated") == pytest.approx(nx.density(g.subgraph(nodes)))
    assert value(m, "density") == pytest.approx(nx.density(g))  # the existing value: every node


def test_assortativity_matches_networkx_on_a_random_graph():
    g = mg.coactivation_graph(random_maps(3, n_docs=80, layers=(0, 1, 2, 3), grid=4, n_cats=2))
    assert value(mg.graph_metrics(g), "assortativity_weighted") == pytest.approx(
        nx.degree_assortativity_coefficient(g, weight="weight"))


# --------------------------------------------------------------------------------------------------- centres


def reference_centres(g, n_layers):
    """LLM-MRI's two formulas, on hidden-state indices 0 .. n_layers - 1 (its loop's extra empty index left out)."""
    nodes = linked(g)
    mass = sum(sum(1 for u in nodes if g.nodes[u]["layer"] == i) * (i - n_layers / 2)
               for i in range(n_layers)) / len(nodes)
    strength = 0.0
    for i in range(n_layers):
        s = pd.Series([g.degree(u, weight="weight") for u in nodes if g.nodes[u]["layer"] == i]).std()
        strength += s * (i - n_layers / 2)
    return mass, strength


def test_centres_and_their_relation_to_the_reference():
    g = planted()
    m = mg.graph_metrics(g)
    nodes = linked(g)
    pos = np.array([g.nodes[u]["layer"] for u in nodes], dtype=float)
    st = np.array([g.degree(u, weight="weight") for u in nodes], dtype=float)
    mid = 1.5
    assert value(m, "center_of_mass") == pytest.approx(np.mean(pos - mid))
    stds = [st[pos == i].std(ddof=1) for i in range(4)]
    assert value(m, "center_of_strength") == pytest.approx(sum(s * (i - mid) for i, s in enumerate(stds)))
    ref_mass, ref_strength = reference_centres(g, 4)
    assert ref_mass == pytest.approx(value(m, "center_of_mass") - 0.5)
    assert ref_strength == pytest.approx(value(m, "center_of_strength") - 0.5 * sum(stds))
    assert value(m, "center_of_mass") != 0  # the planted graph is not symmetric about its middle


def test_centres_use_positions_in_graph_layers_not_layer_numbers():
    a, b = mg.graph_metrics(planted()), mg.graph_metrics(planted(layers=(2, 5, 7, 11)))
    for key in ("center_of_mass", "center_of_strength", "degree_mean", "assortativity_weighted"):
        assert value(b, key) == pytest.approx(value(a, key))
    assert b.layers["layer"].tolist() == [2, 5, 7, 11]
    assert b.layers["degree_mean"].tolist() == pytest.approx(a.layers["degree_mean"].tolist())


# ------------------------------------------------------------------------------------------------- categories


def category_graph_by_hand(g, c):
    h = nx.DiGraph(layers=g.graph["layers"])
    h.add_nodes_from(g.nodes(data=True))
    h.add_edges_from((u, v, {"weight": d[f"weight_{c}"]}) for u, v, d in g.edges(data=True) if d[f"weight_{c}"] > 0)
    return h


@pytest.mark.parametrize("c", ["a", "b"])
def test_category_metrics_equal_metrics_of_the_category_graph(c):
    g = planted()
    got, want = mg.graph_metrics(g, category=c), mg.graph_metrics(category_graph_by_hand(g, c))
    assert value(got, "edges") == sum(1 for *_, w_a, w_b in PLANTED if (w_a if c == "a" else w_b) > 0)
    assert value(got, "edges") < g.number_of_edges()
    for key in ("edges", "degree_mean", "degree_var", "strength_mean", "strength_kurtosis", "assortativity_weighted",
                "center_of_mass", "center_of_strength", "density_non_isolated", "total_weight"):
        assert same(value(got, key), value(want, key)), key
    pd.testing.assert_frame_equal(got.projections, want.projections)
    assert value(got, "n_docs") == g.graph["category_sizes"][c]
    assert got.nodes.set_index("node").loc[[(0, 2)]].iloc[0]["docs"] == g.nodes[(0, 2)][f"docs_{c}"]
    assert got.categories is None and got.category_pairs is None
    assert value(mg.graph_metrics(g), "edges") == len(PLANTED)  # the whole graph untouched


def test_unknown_category_raises():
    with pytest.raises(mg.CategoryError):
        mg.graph_metrics(planted(), category="nope")


# ------------------------------------------------------------------------------------------------ projections


def projections_by_networkx(g):
    und = g.to_undirected().subgraph(linked(g))
    idx = {x: i for i, x in enumerate(g.graph["layers"])}
    rows = {}
    for side, parity in (("even", 0), ("odd", 1)):
        p = bipartite.collaboration_weighted_projected_graph(und, [u for u in und if idx[und.nodes[u]["layer"]] % 2
                                                                   == parity])
        deg = pd.Series([d for _, d in p.degree()], dtype=float)
        st = pd.Series([d for _, d in p.degree(weight="weight")], dtype=float)
        n = p.number_of_nodes()
        with np.errstate(all="ignore"):  # networkx's assortativity divides by a zero variance: NaN, as ours
            assortativity = nx.degree_assortativity_coefficient(p, weight="weight") if p.number_of_edges() \
                else math.nan
        rows[side] = {
            "nodes": n, "edges": p.number_of_edges(), "degree_mean": deg.mean(), "degree_var": deg.var(),
            "strength_mean": st.mean(), "strength_var": st.var(),
            "average_clustering": nx.average_clustering(p, weight="weight") if n else math.nan,
            "assortativity": assortativity,
            "density": nx.density(p) if n else math.nan,
            "average_shortest_path": nx.average_shortest_path_length(p, weight="weight")
            if n and nx.is_connected(p) else math.nan}
    return rows


def assert_projections(g, got=None):
    got = (got if got is not None else mg.graph_metrics(g)).projections
    assert list(got.index) == ["even", "odd"]
    for side, want in projections_by_networkx(g).items():
        for key, v in want.items():
            assert same(float(got.loc[side, key]), float(v)), (side, key, got.loc[side, key], v)


def test_projections_match_networkx_planted():
    g = planted()
    assert_projections(g)
    got = mg.graph_metrics(g).projections
    # The planted graph is connected, so both projections are; category b's graph has a second component, the edge
    # (2, 2) -> (3, 1), so neither of its projections is connected: no average path length.
    assert got["average_shortest_path"].notna().all()
    assert mg.graph_metrics(g, category="b").projections["average_shortest_path"].isna().all()
    assert (got["edges"] > 0).all() and got.loc["even", "average_clustering"] > 0


@pytest.mark.parametrize("c", ["a", "b"])
def test_projections_match_networkx_per_category(c):
    g = planted()
    assert_projections(category_graph_by_hand(g, c), mg.graph_metrics(g, category=c))


def test_projections_match_networkx_when_not_bipartite_between_sides():
    g = planted()
    g.add_edge((0, 1), (2, 2), weight=2, weight_a=2, weight_b=0)  # skips a layer: joins an even node to an even one
    g.add_edge((1, 0), (1, 1), weight=1, weight_a=1, weight_b=0)  # within a layer
    assert_projections(g)


def test_projections_match_networkx_on_a_random_graph():
    g = mg.coactivation_graph(random_maps(1, n_docs=60, layers=(0, 2, 3, 5, 6), grid=3, n_cats=2, density=0.2))
    assert_projections(g)


# ---------------------------------------------------------------------------------- component-like, real, empty


def test_component_like_graph_with_float_weights():
    g = planted(float_weights=True)
    m = mg.graph_metrics(g)
    cats = m.categories.set_index("category")
    assert cats.loc["a", "edges"] == sum(1 for *_, w, _ in PLANTED if w > 0)
    assert cats.loc["b", "total_weight"] == pytest.approx(0.1 * sum(w for *_, w in PLANTED))
    assert value(m, "strength_mean") == pytest.approx(value(mg.graph_metrics(planted()), "strength_mean") * 0.1)
    assert_projections(g, m)
    assert value(mg.graph_metrics(g, category="b"), "edges") == sum(1 for *_, w in PLANTED if w > 0)


def test_real_coactivation_graph(tiny_maps):
    g = mg.coactivation_graph(tiny_maps)
    m = mg.graph_metrics(g)
    assert_projections(g, m)
    assert value(m, "assortativity_weighted") == pytest.approx(nx.degree_assortativity_coefficient(g, weight="weight"))
    assert isinstance(m.categories.iloc[0]["total_weight"], (int, np.integer))  # counts stay integers
    nodes = linked(g)
    assert value(m, "degree_mean") == pytest.approx(np.mean([g.degree(u) for u in nodes]))
    for c in g.graph["categories"]:
        mc = mg.graph_metrics(g, category=c)
        assert value(mc, "edges") == sum(1 for *_, w in g.edges(data=f"weight_{c}") if w > 0)
        assert_projections(category_graph_by_hand(g, c), mc)
    assert "<h4>projections</h4>" in m._repr_html_()


def test_graph_without_edges_or_nodes_and_single_layer():
    g = planted()
    g.remove_edges_from(list(g.edges))
    m = mg.graph_metrics(g)
    for key in ("degree_mean", "strength_var", "assortativity_weighted", "center_of_mass", "center_of_strength",
                "density_non_isolated"):
        assert math.isnan(value(m, key)), key
    assert m.projections["nodes"].tolist() == [0, 0]
    assert m.projections["average_shortest_path"].isna().all()
    assert m.layers["degree_mean"].isna().all()

    empty = mg.graph_metrics(nx.DiGraph(layers=[], categories=[]))
    assert value(empty, "nodes") == 0 and math.isnan(value(empty, "center_of_mass"))
    assert empty.projections["nodes"].tolist() == [0, 0]

    one = nx.DiGraph(layers=[4])
    one.add_nodes_from(((4, i), {"layer": 4}) for i in range(3))
    one.add_edge((4, 0), (4, 1), weight=2.0)
    one.add_edge((4, 1), (4, 2), weight=1.0)
    m1 = mg.graph_metrics(one)
    assert value(m1, "center_of_mass") == 0.0  # one layer: every node at the middle position
    assert m1.layers.loc[0, "degree_mean"] == pytest.approx(4 / 3)
    assert m1.projections.loc["odd", "nodes"] == 0 and math.isnan(m1.projections.loc["odd", "density"])
    assert_projections(one, m1)


def test_planted_graph_values_fixed():
    """A few values worked out by hand on the planted graph, so the comparisons above are not vacuous."""
    m = mg.graph_metrics(planted())
    # 10 nodes with an edge; 11 edges: mean degree 22 / 10.
    assert value(m, "degree_mean") == pytest.approx(2.2)
    # Positions of the 10 nodes: 3 at 0, 2 at 1, 3 at 2, 2 at 3 -> mean 14 / 10 = 1.4, minus 1.5.
    assert value(m, "center_of_mass") == pytest.approx(-0.1)


def test_edges_of_weight_zero_are_left_out_of_llm_mri_metrics():
    """A component graph keeps an edge that passes for one category only, with weight 0 over all documents."""
    g = planted(float_weights=True)
    g.add_edge((1, 2), (2, 2), weight=0.0, weight_a=0.4, weight_b=0.0)
    m, want = mg.graph_metrics(g), mg.graph_metrics(planted(float_weights=True))
    assert value(m, "edges") == len(PLANTED) + 1  # the existing count keeps every edge
    for key in ("degree_mean", "degree_var", "strength_mean", "assortativity_weighted", "center_of_mass",
                "center_of_strength", "density_non_isolated"):
        assert value(m, key) == pytest.approx(value(want, key)), key
    pd.testing.assert_frame_equal(m.projections, want.projections)
    assert m.layers["degree_mean"].tolist() == pytest.approx(want.layers["degree_mean"].tolist(), nan_ok=True)
    assert value(mg.graph_metrics(g, category="a"), "degree_mean") != pytest.approx(
        value(mg.graph_metrics(planted(float_weights=True), category="a"), "degree_mean"))
