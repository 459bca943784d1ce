"""Enrichment of nodes and edges: one-sided Fisher exact tests and Benjamini-Hochberg against scipy, planted
enrichment, the family of a trimmed graph."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mri_lens.errors import GraphError
from mri_lens.lenses import mri as mg

from .builders import hand_maps, random_maps


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


def test_enrich_errors():
    maps = random_maps(0)
    g = mg.coactivation_graph(maps)
    with pytest.raises(GraphError, match="unknown category"):
        mg.enrich(g, categories=["x"])
