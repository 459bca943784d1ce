"""Graph metrics against networkx: degrees, strengths, betweenness, PageRank, clustering, per layer and overall."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from mri_lens.lenses import mri as mg

from .builders import hand_graph, random_maps


def test_metrics_match_networkx():
    g = hand_graph()
    m = mg.graph_metrics(g)
    nodes = m.nodes.set_index("node")
    dist = nx.DiGraph()
    dist.add_nodes_from(g)
    dist.add_edges_from((u, v, {"d": 1 / w}) for u, v, w in g.edges(data="weight"))
    btw = nx.betweenness_centrality(dist, weight="d")
    pr = nx.pagerank(g, weight="weight")
    clus = nx.clustering(g.to_undirected())
    for u in g.nodes:
        row = nodes.loc[[u]].iloc[0]
        assert row["in_degree"] == g.in_degree(u) and row["out_degree"] == g.out_degree(u)
        assert row["out_strength"] == g.out_degree(u, weight="weight")
        assert row["betweenness"] == pytest.approx(btw[u])
        assert row["pagerank"] == pytest.approx(pr[u])
        assert row["clustering"] == pytest.approx(clus[u])
        assert row["degree_centrality"] == pytest.approx(nx.degree_centrality(g)[u])
    layer0 = m.layers.set_index("layer").loc[0]
    out0 = [g.out_degree((0, r), weight="weight") for r in range(4)]
    assert layer0["out_strength_mean"] == pytest.approx(np.mean(out0))
    assert layer0["out_strength_std"] == pytest.approx(np.std(out0))
    assert layer0["out_degree_max"] == 3
    assert layer0["density_to_next"] == pytest.approx(8 / 16)
    s = m.summary["value"]
    assert s["edges"] == 8 and s["density"] == pytest.approx(nx.density(g))
    assert s["average_clustering_undirected"] == pytest.approx(nx.average_clustering(g.to_undirected()))
    pair = m.category_pairs.iloc[0]
    assert (pair["a"], pair["b"]) == ("pos", "neg")
    assert "<table" in m._repr_html_() and "GraphMetrics" in repr(m)


def test_metrics_non_layered_graph_clustering():
    g = hand_graph()
    g.add_edge((0, 0), (0, 1), weight=1)  # same-layer edge: triangles now possible
    m = mg.graph_metrics(g)
    clus = nx.clustering(g.to_undirected())
    assert m.nodes.set_index("node").loc[[(0, 0)]].iloc[0]["clustering"] == pytest.approx(clus[(0, 0)])
    assert clus[(0, 0)] > 0


def test_metrics_large_random_graph_runs():
    g = mg.coactivation_graph(random_maps(0, n_docs=200, layers=(0, 1, 2, 3), grid=5, n_cats=5, density=0.3))
    m = mg.graph_metrics(g, betweenness_sources=10)
    assert len(m.layers) == 4 and len(m.nodes) == 100 and len(m.category_pairs) == 10
    assert m.summary["value"]["betweenness_sources"] == 10
