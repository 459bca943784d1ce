"""Co-activation graph: vectorised counts against a brute-force loop, trimming, enrichment, export, figure, metrics."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pytest
from scipy import stats

from mri_lens import graph as mg
from mri_lens.graph import GraphError


@dataclass
class FakeMaps:
    """Stand-in for a fitted RegionMaps: exactly the members the graph consumes."""

    layers: list
    grid: int
    n_docs: int
    labels: np.ndarray | None
    label_names: list | None
    mode: str
    acts: dict  # layer -> bool [n_docs, n_regions]

    @property
    def n_regions(self) -> int:
        return self.grid * self.grid

    def activated(self, layer):
        return self.acts[layer]

    def region_neurons(self, layer, region):
        if self.mode == "documents":
            return np.zeros(0, dtype=np.int64)
        return np.arange(region * 3, region * 3 + (region % 3))  # 0-2 neurons, some regions empty

    def region_activation(self, layer):
        return self.acts[layer].astype(np.float32)


def random_maps(seed=0, n_docs=60, layers=(0, 2, 3), grid=3, n_cats=2, density=0.3, mode="neurons"):
    rng = np.random.default_rng(seed)
    r = grid * grid
    if mode == "documents":  # exactly one region per document
        acts = {l: np.eye(r, dtype=bool)[rng.integers(0, r, n_docs)] for l in layers}
    else:
        acts = {l: rng.random((n_docs, r)) < density for l in layers}
    labels = rng.integers(0, n_cats, n_docs) if n_cats else None
    names = [f"cat{i}" for i in range(n_cats)] if n_cats else None
    return FakeMaps(list(layers), grid, n_docs, labels, names, mode, acts)


def brute_force(maps, cats):
    """Per-document Python loop: node and edge counts, total and per category."""
    names = maps.label_names
    nodes, edges = Counter(), Counter()
    for d in range(maps.n_docs):
        cat = names[maps.labels[d]] if maps.labels is not None else None
        keys = [None] + ([cat] if cat in cats else [])
        for li, layer in enumerate(maps.layers):
            act = np.flatnonzero(maps.activated(layer)[d])
            for r in act:
                for k in keys:
                    nodes[(k, layer, int(r))] += 1
            if li + 1 < len(maps.layers):
                nxt = maps.layers[li + 1]
                for r in act:
                    for s in np.flatnonzero(maps.activated(nxt)[d]):
                        for k in keys:
                            edges[(k, (layer, int(r)), (nxt, int(s)))] += 1
    return nodes, edges


def node_link(g):
    return json.dumps(nx.node_link_data(g, edges="edges"), sort_keys=True)


# ------------------------------------------------------------------------------------------- counts


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_cats", [0, 1, 2, 5])
@pytest.mark.parametrize("mode,density", [("neurons", 0.08), ("neurons", 0.6), ("documents", None)])
@pytest.mark.parametrize("product", ["dense", "sparse"])
def test_counts_equal_brute_force(seed, n_cats, mode, density, product, monkeypatch):
    # Both product paths (dense BLAS, sparse) on every case, whatever density would pick.
    monkeypatch.setattr(mg, "_DENSE_MIN_DENSITY_PRODUCT", 0.0 if product == "dense" else np.inf)
    maps = random_maps(seed, n_cats=n_cats, density=density or 0, mode=mode)
    g = mg.coactivation_graph(maps)
    cats = g.graph["categories"]
    assert cats == (maps.label_names or [])
    nodes, edges = brute_force(maps, cats)
    assert g.number_of_nodes() == len(maps.layers) * maps.n_regions
    for u, d in g.nodes(data=True):
        assert d["docs"] == nodes[(None,) + u]
        for c in cats:
            assert d[f"docs_{c}"] == nodes[(c,) + u]
        if cats:  # every document is in one category
            assert sum(d[f"docs_{c}"] for c in cats) == d["docs"]
    expected = {(u, v): w for (k, u, v), w in edges.items() if k is None}
    assert {(u, v): d["weight"] for u, v, d in g.edges(data=True)} == expected
    for u, v, d in g.edges(data=True):
        for c in cats:
            assert d[f"weight_{c}"] == edges[(c, u, v)]
        if cats:
            assert sum(d[f"weight_{c}"] for c in cats) == d["weight"]


def test_subset_of_categories_and_unlabelled_rest():
    maps = random_maps(3, n_cats=5, density=0.3)
    g = mg.coactivation_graph(maps, categories=["cat3", "cat1"])
    assert g.graph["categories"] == ["cat3", "cat1"]
    nodes, edges = brute_force(maps, ["cat3", "cat1"])
    for u, v, d in g.edges(data=True):
        assert d["weight"] == edges[(None, u, v)]
        assert d["weight_cat3"] == edges[("cat3", u, v)] and d["weight_cat1"] == edges[("cat1", u, v)]
        assert "weight_cat0" not in d
    assert g.graph["category_sizes"] == {c: int((maps.labels == int(c[-1])).sum()) for c in ["cat3", "cat1"]}


def test_node_attributes_and_metadata():
    maps = random_maps(0, grid=3)
    g = mg.coactivation_graph(maps, min_weight=2)
    assert list(g.nodes) == [(l, r) for l in maps.layers for r in range(9)]
    d = g.nodes[(2, 5)]
    assert (d["layer"], d["region"], d["row"], d["col"]) == (2, 5, 1, 2)
    assert d["neurons"] == [15, 16] and all(type(x) is int for x in d["neurons"])
    for u, v in g.edges:
        assert all(type(x) is int for x in u + v)
    assert list(g.edges) == sorted(g.edges)
    meta = g.graph
    assert meta["layers"] == [0, 2, 3] and meta["grid"] == 3 and meta["n_docs"] == 60
    assert meta["mode"] == "neurons" and meta["categories"] == ["cat0", "cat1"]
    assert sum(meta["category_sizes"].values()) == 60
    assert meta["params"]["min_weight"] == 2


@pytest.mark.parametrize("threshold", [0.0, np.inf])
def test_sparse_activation_input_accepted(threshold, monkeypatch):
    import scipy.sparse as sp

    maps = random_maps(4)
    g1 = mg.coactivation_graph(maps)
    monkeypatch.setattr(mg, "_DENSE_MIN_DENSITY_PRODUCT", threshold)
    maps.acts = {l: sp.csr_matrix(a) for l, a in maps.acts.items()}
    assert node_link(mg.coactivation_graph(maps)) == node_link(g1)


def test_deterministic():
    maps = random_maps(5, n_cats=3)
    a = mg.coactivation_graph(maps, min_weight=3, top_k=2, enrichment=True)
    b = mg.coactivation_graph(maps, min_weight=3, top_k=2, enrichment=True)
    assert node_link(a) == node_link(b)


# ------------------------------------------------------------------------------------------- trimming


def hand_maps():
    """Two layers, grid 2 (4 regions), 10 documents with a hand-chosen co-activation pattern."""
    rows0 = [[0], [0], [0], [0], [0, 1], [1], [1], [2], [2], [3]]
    rows1 = [[0], [0], [0, 1], [1], [2], [2], [3], [3], [3], [0, 1]]
    a0 = np.zeros((10, 4), bool)
    a1 = np.zeros((10, 4), bool)
    for d, (r0, r1) in enumerate(zip(rows0, rows1)):
        a0[d, r0] = True
        a1[d, r1] = True
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1, 1, 0])
    return FakeMaps([0, 1], 2, 10, labels, ["pos", "neg"], "neurons", {0: a0, 1: a1})


# Untrimmed edges of hand_maps, computed by hand: (source region, target region) -> weight.
HAND = {(0, 0): 3, (0, 1): 2, (0, 2): 1, (1, 2): 2, (1, 3): 1, (2, 3): 2, (3, 0): 1, (3, 1): 1}


def edge_dict(g):
    return {(u[1], v[1]): d["weight"] for u, v, d in g.edges(data=True)}


def test_hand_counts_and_min_weight():
    g = mg.coactivation_graph(hand_maps())
    assert edge_dict(g) == HAND
    assert g.graph["n_edges_untrimmed"] == len(HAND)
    assert g.edges[(0, 0), (1, 1)]["weight_pos"] == 1 and g.edges[(0, 0), (1, 1)]["weight_neg"] == 1
    assert edge_dict(mg.coactivation_graph(hand_maps(), min_weight=2)) == {k: w for k, w in HAND.items() if w >= 2}
    assert edge_dict(mg.coactivation_graph(hand_maps(), min_weight=0)) == HAND
    assert mg.coactivation_graph(hand_maps(), min_weight=4).number_of_edges() == 0
    assert mg.coactivation_graph(hand_maps(), min_weight=4).number_of_nodes() == 8


def test_top_k():
    g = mg.coactivation_graph(hand_maps(), top_k=1)
    # Out-rank 0 per source (ties by target id): 0->0, 1->2, 2->3, 3->0 (tied with 3->1).
    # In-rank 0 per target: 0->0 (vs 3->0), 0->1 (vs 3->1), 1->2 (vs 0->2), 2->3 (vs 1->3).
    assert edge_dict(g) == {(0, 0): 3, (0, 1): 2, (1, 2): 2, (2, 3): 2, (3, 0): 1}
    assert edge_dict(mg.coactivation_graph(hand_maps(), top_k=3)) == HAND


def test_percentile_per_transition_and_combined():
    w = np.array(list(HAND.values()))
    thr = np.percentile(w, 50)
    g = mg.coactivation_graph(hand_maps(), percentile=50)
    assert edge_dict(g) == {k: v for k, v in HAND.items() if v >= thr}
    maps = random_maps(1, layers=(0, 1, 2), density=0.5)
    full = mg.coactivation_graph(maps)
    g = mg.coactivation_graph(maps, percentile=70, min_weight=6)
    for layer in (0, 1):
        ws = [d["weight"] for u, _, d in full.edges(data=True) if u[0] == layer]
        t = max(np.percentile(ws, 70), 6)
        assert {(u, v) for u, v, d in g.edges(data=True) if u[0] == layer} == \
            {(u, v) for u, v, d in full.edges(data=True) if u[0] == layer and d["weight"] >= t}


# ------------------------------------------------------------------------------------------- enrichment


def test_enrichment_matches_fisher_exact_and_bh():
    maps = hand_maps()
    g = mg.coactivation_graph(maps, enrichment=True, alpha=0.5)
    n, n_pos = 10, int((maps.labels == 0).sum())
    assert n_pos == 5 == g.graph["category_sizes"]["pos"]
    for u, d in g.nodes(data=True):
        k, kt = d["docs_pos"], d["docs"]
        table = [[k, n_pos - k], [kt - k, n - n_pos - kt + k]]
        assert d["p_pos"] == pytest.approx(stats.fisher_exact(table, alternative="greater").pvalue, rel=1e-12)
    for u, v, d in g.edges(data=True):
        k, kt = d["weight_neg"], d["weight"]
        table = [[k, 5 - k], [kt - k, n - 5 - kt + k]]
        assert d["p_neg"] == pytest.approx(stats.fisher_exact(table, alternative="greater").pvalue, rel=1e-12)
    for c in ("pos", "neg"):
        for items in (list(g.nodes.values()), [d for *_, d in g.edges(data=True)]):
            p = np.array([d[f"p_{c}"] for d in items])
            q = np.array([d[f"q_{c}"] for d in items])
            assert np.all(q >= p - 1e-15)
            np.testing.assert_allclose(q, stats.false_discovery_control(p, method="bh"))
            o = np.argsort(p, kind="stable")
            assert np.all(np.diff(q[o]) >= -1e-15)  # monotone in p
    assert "Fisher" in g.graph["enrichment"]["test"] and g.graph["enrichment"]["alpha"] == 0.5


def test_enrichment_planted_and_enriched_for():
    # 200 documents; region 4 of layer 1 is activated by category "cat1" only.
    maps = random_maps(0, n_docs=200, layers=(0, 1), n_cats=2, density=0.2)
    maps.acts[1][:, 4] = maps.labels == 1
    g = mg.coactivation_graph(maps, enrichment=True)
    assert g.nodes[(1, 4)]["enriched_for"] == "cat1" and g.nodes[(1, 4)]["q_cat1"] < 1e-10
    assert g.nodes[(1, 4)]["p_cat0"] == 1.0
    assert sum(d["enriched_for"] is not None for _, d in g.nodes(data=True)) <= 3


def test_enrich_function_on_trimmed_graph_uses_graph_family():
    maps = random_maps(2, n_cats=3)
    g = mg.coactivation_graph(maps, min_weight=4)
    mg.enrich(g, categories="cat2", alpha=0.1)
    ps = np.array([d["p_cat2"] for *_, d in g.edges(data=True)])
    qs = np.array([d["q_cat2"] for *_, d in g.edges(data=True)])
    np.testing.assert_allclose(qs, stats.false_discovery_control(ps, method="bh"))
    assert all("p_cat0" not in d for *_, d in g.edges(data=True))


# ------------------------------------------------------------------------------------------- export


@pytest.mark.parametrize("ext", ["graphml", "gexf", "json"])
def test_export_readable(tmp_path, ext):
    g = mg.coactivation_graph(random_maps(0), enrichment=True)
    path = mg.write_graph(g, tmp_path / f"g.{ext}")
    assert os.path.isabs(path) and os.path.exists(path)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]  # atomic: no leftovers
    if ext == "graphml":
        h = nx.read_graphml(path)
        assert json.loads(h.graph["layers"]) == [0, 2, 3]
        d = h.nodes["L2_R5"]
        assert (d["layer"], d["region"], json.loads(d["neurons"])) == (2, 5, [15, 16])
    elif ext == "gexf":
        h = nx.read_gexf(path)
    else:
        h = mg.load_graph_json(path)
        assert list(h.nodes) == list(g.nodes) and all(isinstance(u, tuple) for u in h.nodes)
        assert node_link(h) == node_link(g)
        assert dict(h.nodes(data=True)) == dict(g.nodes(data=True))
        assert list(h.edges(data=True)) == list(g.edges(data=True))
        assert h.graph == g.graph
    assert h.number_of_nodes() == g.number_of_nodes() and h.number_of_edges() == g.number_of_edges()
    assert h.is_directed()


def test_export_numpy_parameters_and_public_names(tmp_path):
    import mri_lens as ml

    g = ml.coactivation_graph(random_maps(0), min_weight=np.int64(2), percentile=np.float64(10.0))
    h = ml.load_graph_json(ml.write_graph(g, tmp_path / "g.json"))
    assert h.graph["params"]["min_weight"] == 2 and type(h.graph["params"]["min_weight"]) is int


def test_export_unknown_format(tmp_path):
    with pytest.raises(GraphError, match="unknown graph format"):
        mg.write_graph(nx.DiGraph(), tmp_path / "g.csv")


# ------------------------------------------------------------------------------------------- figure


@pytest.mark.parametrize("n_cats", [0, 1, 2, 5])
def test_figure(n_cats):
    maps = random_maps(1, n_cats=n_cats, density=0.4)
    g = mg.coactivation_graph(maps)
    fig = mg.graph_figure(g, width_bins=4)
    h = max(n_cats, 0)
    n_classes = h + 2 if h else 1
    assert len(fig.data) <= n_classes * 4 + 2
    nodes = [t for t in fig.data if t.name == "regions"][0]
    col = {l: i for i, l in enumerate(maps.layers)}
    assert list(nodes.x) == [col[u[0]] for u in g.nodes]
    assert list(nodes.y) == [-u[1] for u in g.nodes]
    edges = [t for t in fig.data if t.name == "edges"][0]
    (u, v, d), = [e for e in g.edges(data=True)][:1]
    assert f"documents: {d['weight']}" in edges.hovertext[0]
    for c in g.graph["categories"]:
        assert f"{c}: {d[f'weight_{c}']} (" in edges.hovertext[0]
    assert list(fig.layout.xaxis.ticktext) == [f"layer {l}" for l in maps.layers]


def test_figure_highlight_and_colours():
    g = mg.coactivation_graph(hand_maps(), enrichment=True)
    fig = mg.graph_figure(g, highlight=["pos"])
    names = {t.name for t in fig.data if t.mode == "lines"}
    assert names <= {"pos", "shared", "no highlighted category"}
    # Edge 0->0 carries two "pos" documents only: drawn in pos's colour.
    fig = mg.graph_figure(g, highlight=["pos", "neg"])
    lines = [t for t in fig.data if t.mode == "lines"]
    pos_xy = {(t.x[i], t.y[i], t.x[i + 1], t.y[i + 1]) for t in lines if t.name == "pos"
              for i in range(0, len(t.x), 3)}
    assert (0, 0, 1, 0) in pos_xy
    shared = {(t.x[i], t.y[i], t.x[i + 1], t.y[i + 1]) for t in lines if t.name == "shared"
              for i in range(0, len(t.x), 3)}
    assert (0, 0, 1, -1) in shared  # 0->1 has one pos and one neg document
    widths = [t.line.width for t in lines]
    assert max(widths) == pytest.approx(8.0)
    with pytest.raises(GraphError, match="unknown category 'nope'"):
        mg.graph_figure(g, highlight=["nope"])


def test_figure_many_edges_few_traces():
    maps = random_maps(0, n_docs=300, layers=tuple(range(6)), grid=6, n_cats=5, density=0.3)
    g = mg.coactivation_graph(maps)
    assert g.number_of_edges() > 5000
    fig = mg.graph_figure(g)
    assert len(fig.data) <= 7 * 4 + 2


# ------------------------------------------------------------------------------------------- metrics


def hand_graph():
    g = mg.coactivation_graph(hand_maps(), enrichment=True)
    return g


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


# ------------------------------------------------------------------------------------------- compare


def test_compare_categories_matches_scipy():
    maps = random_maps(6, n_docs=120, n_cats=3, density=0.3)
    maps.acts[2][:, 0] = maps.labels == 0  # planted: region 0 of layer 2 only for cat0
    g = mg.coactivation_graph(maps)
    cmp = mg.compare_categories(maps, g, "cat0", "cat1")
    na, nb = (int((maps.labels == i).sum()) for i in (0, 1))
    reg = cmp.regions
    assert len(reg) == 3 * 9
    for _, r in reg.iterrows():
        ka, kb = r["docs_cat0"], r["docs_cat1"]
        p = stats.fisher_exact([[ka, na - ka], [kb, nb - kb]]).pvalue
        assert r["p_value"] == pytest.approx(p, rel=1e-9, abs=1e-300)
        assert r["log_odds"] == pytest.approx(np.log((ka + .5) * (nb - kb + .5) / ((na - ka + .5) * (kb + .5))))
    np.testing.assert_allclose(reg["q_value"], stats.false_discovery_control(reg["p_value"], method="bh"))
    top = reg[(reg["layer"] == 2) & (reg["region"] == 0)].iloc[0]
    assert top["enriched_for"] == "cat0" and top["frac_cat1"] == 0
    e = cmp.edges
    assert len(e) == g.number_of_edges()
    for _, r in e.head(40).iterrows():
        ka, kb = r["docs_cat0"], r["docs_cat1"]
        assert ka == g.edges[(r["source_layer"], r["source_region"]), (r["target_layer"], r["target_region"])][
            "weight_cat0"]
        assert r["p_value"] == pytest.approx(stats.fisher_exact([[ka, na - ka], [kb, nb - kb]]).pvalue, rel=1e-9)
    s = cmp.summary
    wa = np.array([d["weight_cat0"] for *_, d in g.edges(data=True)])
    wb = np.array([d["weight_cat1"] for *_, d in g.edges(data=True)])
    u = (wa > 0) | (wb > 0)
    assert s["edge_jaccard"] == pytest.approx(((wa > 0) & (wb > 0)).sum() / u.sum())
    assert s["weight_pearson"] == pytest.approx(stats.pearsonr(wa[u], wb[u])[0])
    assert s["weight_spearman"] == pytest.approx(stats.spearmanr(wa[u], wb[u])[0])
    assert s["regions_enriched_a"] >= 1
    # Region counts from the graph alone give the same table.
    alone = mg.compare_categories(None, g, "cat0", "cat1")
    np.testing.assert_allclose(alone.regions["p_value"], reg["p_value"])
    fig = cmp.figure()
    assert len(fig.data) >= 2
    assert "cat0" in cmp._repr_html_() and "CategoryComparison" in repr(cmp)


def test_two_sided_fisher_edge_cases():
    na, nb = 7, 5
    ka = np.array([0, 7, 0, 3, 7, 0, 2])
    kb = np.array([0, 5, 5, 2, 0, 1, 4])
    p = mg._fisher_two_sided(ka, ka + kb, na, nb)
    for i in range(len(ka)):
        ref = stats.fisher_exact([[ka[i], na - ka[i]], [kb[i], nb - kb[i]]]).pvalue
        assert p[i] == pytest.approx(ref, rel=1e-12)


def test_fisher_helpers_at_corpus_scale():
    # Log-gamma pmf: agrees with scipy's exact (slow) fisher_exact at thousands of documents, tails included.
    rng = np.random.default_rng(0)
    n, n_c = 5000, 1800
    k_total = rng.integers(0, 2500, 40)
    k = np.array([rng.integers(max(0, t - (n - n_c)), min(n_c, t) + 1) for t in k_total])
    k[:5] = np.minimum(k_total[:5], n_c)  # extreme upper tails
    p = mg._upper_tail(k, n, n_c, k_total)
    for i in range(len(k)):
        table = [[k[i], n_c - k[i]], [k_total[i] - k[i], n - n_c - k_total[i] + k[i]]]
        assert p[i] == pytest.approx(stats.fisher_exact(table, alternative="greater").pvalue, rel=1e-9)
    p2 = mg._fisher_two_sided(k, k_total, n_c, n - n_c)
    for i in range(len(k)):
        table = [[k[i], n_c - k[i]], [k_total[i] - k[i], n - n_c - k_total[i] + k[i]]]
        assert p2[i] == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9)


# ------------------------------------------------------------------------------------------- errors


def test_errors():
    maps = random_maps(0)
    with pytest.raises(GraphError, match="unknown category 'nope'"):
        mg.coactivation_graph(maps, categories=["nope"])
    with pytest.raises(GraphError, match="min_weight must be a number >= 0"):
        mg.coactivation_graph(maps, min_weight=-1)
    with pytest.raises(GraphError, match="top_k must be an integer >= 1"):
        mg.coactivation_graph(maps, top_k=0)
    with pytest.raises(GraphError, match="percentile must be a number in"):
        mg.coactivation_graph(maps, percentile=101)
    with pytest.raises(GraphError, match="alpha must be in"):
        mg.coactivation_graph(maps, alpha=1.5)
    unlabelled = random_maps(0, n_cats=0)
    with pytest.raises(GraphError, match="no labels"):
        mg.coactivation_graph(unlabelled, categories=["cat0"])
    with pytest.raises(GraphError, match="enrichment needs categories"):
        mg.coactivation_graph(unlabelled, enrichment=True)
    bad = random_maps(0)
    bad.acts[2] = bad.acts[2][:10]
    with pytest.raises(GraphError, match=r"maps.activated\(2\) has shape \(10, 9\); expected"):
        mg.coactivation_graph(bad)
    bad = random_maps(0)
    bad.labels = bad.labels[:5]
    with pytest.raises(GraphError, match="maps.labels has shape"):
        mg.coactivation_graph(bad)
    g = mg.coactivation_graph(maps)
    with pytest.raises(GraphError, match="unknown category 'nope'"):
        mg.compare_categories(maps, g, "cat0", "nope")
    with pytest.raises(GraphError, match="two different categories"):
        mg.compare_categories(maps, g, "cat0", "cat0")
    with pytest.raises(GraphError, match="not built from these maps"):
        mg.compare_categories(random_maps(0, n_docs=61), g, "cat0", "cat1")
    with pytest.raises(GraphError, match="unknown category"):
        mg.enrich(g, categories=["x"])
    assert isinstance(GraphError("x"), ValueError)


def test_load_graph_json_refuses_corrupted_and_foreign_files(tmp_path):
    import mri_lens as ml

    bad = tmp_path / "bad.json"
    bad.write_text('{"directed": true, "nodes": [')
    with pytest.raises(ml.ScanFileError, match="corrupted or truncated"):
        ml.load_graph_json(bad)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"directed": True, "graph": {"kind": "something else"}, "nodes": [], "edges": []}))
    with pytest.raises(ml.ScanFileError, match="not a saved mri_lens.coactivation_graph"):
        ml.load_graph_json(foreign)
    with pytest.raises(ml.ScanFileError, match="does not exist"):
        ml.load_graph_json(tmp_path / "missing.json")
