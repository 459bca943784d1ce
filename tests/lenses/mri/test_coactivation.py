"""Co-activation counts and graph: vectorised counts against a brute-force loop, attributes, trimming, errors, and
the graph of real region maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.errors import GraphError
from mri_lens.lenses.mri import coactivation as mg
from mri_lens.lenses.mri.regions import RegionMaps

from .builders import (HAND, brute_force, edge_dict, enriched_regions, hand_maps, node_link, random_maps,
                       relabelled, shuffled_labels)


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
    a = mg.coactivation_graph(maps, min_weight=3, top_edges=2, enrichment=True)
    b = mg.coactivation_graph(maps, min_weight=3, top_edges=2, enrichment=True)
    assert node_link(a) == node_link(b)


# ------------------------------------------------------------------------------------------- trimming


def test_hand_counts_and_min_weight():
    g = mg.coactivation_graph(hand_maps())
    assert edge_dict(g) == HAND
    assert g.graph["n_edges_untrimmed"] == len(HAND)
    assert g.edges[(0, 0), (1, 1)]["weight_pos"] == 1 and g.edges[(0, 0), (1, 1)]["weight_neg"] == 1
    assert edge_dict(mg.coactivation_graph(hand_maps(), min_weight=2)) == {k: w for k, w in HAND.items() if w >= 2}
    assert edge_dict(mg.coactivation_graph(hand_maps(), min_weight=0)) == HAND
    assert mg.coactivation_graph(hand_maps(), min_weight=4).number_of_edges() == 0
    assert mg.coactivation_graph(hand_maps(), min_weight=4).number_of_nodes() == 8


def test_top_edges():
    g = mg.coactivation_graph(hand_maps(), top_edges=1)
    # Out-rank 0 per source (ties by target id): 0->0, 1->2, 2->3, 3->0 (tied with 3->1).
    # In-rank 0 per target: 0->0 (vs 3->0), 0->1 (vs 3->1), 1->2 (vs 0->2), 2->3 (vs 1->3).
    assert edge_dict(g) == {(0, 0): 3, (0, 1): 2, (1, 2): 2, (2, 3): 2, (3, 0): 1}
    assert edge_dict(mg.coactivation_graph(hand_maps(), top_edges=3)) == HAND


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


# ------------------------------------------------------------------------------------------- errors


def test_errors():
    maps = random_maps(0)
    with pytest.raises(GraphError, match="unknown category 'nope'"):
        mg.coactivation_graph(maps, categories=["nope"])
    with pytest.raises(GraphError, match="min_weight must be a number >= 0"):
        mg.coactivation_graph(maps, min_weight=-1)
    with pytest.raises(GraphError, match="top_edges must be an integer >= 1"):
        mg.coactivation_graph(maps, top_edges=0)
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
    assert isinstance(GraphError("x"), ValueError)


# ------------------------------------------------------------------------------------------- on real region maps


def test_graph_on_real_maps_equals_brute_force(planted_maps):
    """The co-activation graph of real maps (the planted code-vs-prose structure): edge weights equal a
    per-document loop, per-category counts sum to the totals, and enrichment finds both planted categories, in as
    many regions as scipy's Fisher test and Benjamini-Hochberg find, and none once the labels are shuffled."""
    maps = planted_maps
    g = ml.mri.coactivation_graph(maps, min_weight=1, enrichment=True)
    names = maps.label_names
    expect: dict = {}
    for li in range(len(maps.layers) - 1):
        l0, l1 = maps.layers[li], maps.layers[li + 1]
        a0, a1 = maps.activated(l0), maps.activated(l1)
        for d in range(maps.n_docs):
            cat = names[maps.labels[d]]
            for r in np.flatnonzero(a0[d]):
                for s in np.flatnonzero(a1[d]):
                    e = expect.setdefault(((l0, int(r)), (l1, int(s))), {"weight": 0, "code": 0, "prose": 0})
                    e["weight"] += 1
                    e[cat] += 1
    assert set(g.edges) == set(expect)
    for (u, v), e in expect.items():
        d = g.edges[u, v]
        assert (d["weight"], d["weight_code"], d["weight_prose"]) == (e["weight"], e["code"], e["prose"])
    for n, d in g.nodes(data=True):
        assert d["docs"] == d["docs_code"] + d["docs_prose"] == int(maps.activated(n[0])[:, n[1]].sum())
        assert d["neurons"] == maps.region_neurons(*n).tolist()
    assert {d.get("enriched_for") for _, d in g.nodes(data=True)} >= {"code", "prose"}
    cmp = ml.mri.compare_categories(maps, g, "code", "prose")
    found = enriched_regions(maps, maps.labels, "code", "prose")
    assert (cmp.summary["regions_enriched_a"], cmp.summary["regions_enriched_b"]) == (found["code"], found["prose"])
    assert found["code"] >= 5 and found["prose"] >= 5, found
    null = relabelled(maps, shuffled_labels(maps))
    g0 = ml.mri.coactivation_graph(null, min_weight=1, enrichment=True)
    cmp0 = ml.mri.compare_categories(null, g0, "code", "prose")
    assert cmp0.summary["regions_enriched_a"] + cmp0.summary["regions_enriched_b"] <= 1, cmp0.summary
    assert sum(d.get("enriched_for") is not None for _, d in g0.nodes(data=True)) <= 1


def test_same_seed_same_graph_and_figures(tiny_scan, tiny_maps):
    import networkx as nx

    again = RegionMaps.fit(tiny_scan, grid=5, seed=0, n_jobs=1, progress=False)
    g1 = ml.mri.coactivation_graph(tiny_maps, min_weight=2, top_edges=3, enrichment=True)
    g2 = ml.mri.coactivation_graph(again, min_weight=2, top_edges=3, enrichment=True)
    assert json.dumps(nx.node_link_data(g1, edges="edges"), sort_keys=True, default=str) == \
        json.dumps(nx.node_link_data(g2, edges="edges"), sort_keys=True, default=str)
    assert ml.mri.graph_figure(g1).to_json() == ml.mri.graph_figure(g2).to_json()
    assert tiny_maps.figure(1).to_json() == again.figure(1).to_json()
    assert tiny_maps.scatter(1, "code").to_json() == again.scatter(1, "code").to_json()


def test_documents_mode_graph_counts_one_path_per_document(tiny_scan):
    m = RegionMaps.fit(tiny_scan, grid=4, mode="documents", seed=0, n_jobs=1, progress=False)
    g = ml.mri.coactivation_graph(m, min_weight=1)
    for li in range(len(m.layers) - 1):
        w = sum(d["weight"] for u, v, d in g.edges(data=True) if u[0] == m.layers[li])
        assert w == tiny_scan.n_docs  # every document passes through exactly one edge per transition
