"""Two categories compared: regions and edges (two-sided Fisher, BH) against scipy, and neurons
(category_differences: Welch's t-test, Cohen's d, BH) against scipy on a real scan."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mri_lens.data.corpus import check_categories
from mri_lens.errors import CategoryError, GraphError
from mri_lens.lenses import mri as mg

from .builders import random_maps


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


def test_compare_errors():
    maps = random_maps(0)
    g = mg.coactivation_graph(maps)
    with pytest.raises(GraphError, match="unknown category 'nope'"):
        mg.compare_categories(maps, g, "cat0", "nope")
    with pytest.raises(GraphError, match="two different categories"):
        mg.compare_categories(maps, g, "cat0", "cat0")
    with pytest.raises(GraphError, match="not built from these maps"):
        mg.compare_categories(random_maps(0, n_docs=61), g, "cat0", "cat1")


def test_category_differences_match_scipy(tiny_scan):
    """Per neuron: Welch's p-value is scipy's ttest_ind(equal_var=False) (1 where undefined, as documented), Cohen's
    d uses the pooled SD sqrt(((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2)) recomputed here by hand, and the
    q-values are scipy's Benjamini-Hochberg over all neurons of all layers."""
    s = tiny_scan
    df = mg.category_differences(s, "code", "prose")
    assert len(df) == s.n_layers * s.d_mlp
    assert df["layer"].tolist() == np.repeat(s.layers, s.d_mlp).tolist()
    assert df["neuron"].tolist() == np.tile(np.arange(s.d_mlp), s.n_layers).tolist()
    in_a = s.labels == s.label_names.index("code")
    in_b = s.labels == s.label_names.index("prose")
    na, nb = int(in_a.sum()), int(in_b.sum())
    assert na >= 2 and nb >= 2
    p_all = []
    for layer in s.layers:
        x = s.pooled("mean", layer=layer).astype(np.float64)
        rows = df[df["layer"] == layer]
        for j in range(s.d_mlp):
            xa, xb = x[in_a, j], x[in_b, j]
            p = stats.ttest_ind(xa, xb, equal_var=False).pvalue
            p_all.append(1.0 if np.isnan(p) else p)
            ma, mb = sum(xa) / na, sum(xb) / nb
            va = sum((v - ma) ** 2 for v in xa) / (na - 1)
            vb = sum((v - mb) ** 2 for v in xb) / (nb - 1)
            sd = ((((na - 1) * va + (nb - 1) * vb) / (na + nb - 2)) ** 0.5)
            d = (ma - mb) / sd if sd > 0 else 0.0
            r = rows.iloc[j]
            assert r["mean_code"] == pytest.approx(ma, rel=1e-9, abs=1e-12)
            assert r["mean_prose"] == pytest.approx(mb, rel=1e-9, abs=1e-12)
            assert r["cohens_d"] == pytest.approx(d, rel=1e-7, abs=1e-9)
    p_all = np.array(p_all)
    np.testing.assert_allclose(df["p_value"], p_all, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(df["q_value"], stats.false_discovery_control(p_all, method="bh"), rtol=1e-9)
    assert (df["q_value"] < 0.05).sum() > 0  # the planted code/prose difference is found
    # b=None: "code" against the rest, which here is "prose"
    rest = mg.category_differences(s, "code")
    np.testing.assert_array_equal(rest["p_value"], df["p_value"])
    assert "mean_rest" in rest.columns


def test_unknown_categories_raise_category_error(tiny_scan, tiny_maps):
    """Every unknown category of the MRI lens is a CategoryError (also a GraphError, ScanError and CorpusError),
    with one message style naming the known categories."""
    import mri_lens as ml

    maps = random_maps(0)
    g = mg.coactivation_graph(maps)
    calls = [
        ("the maps' categories are 'cat0', 'cat1'", lambda: mg.coactivation_graph(maps, categories=["nope"])),
        ("the graph's categories are 'cat0', 'cat1'", lambda: mg.enrich(g, categories="nope")),
        ("the graph's categories are 'cat0', 'cat1'", lambda: mg.graph_figure(g, highlight=["nope"])),
        ("the graph's categories are 'cat0', 'cat1'", lambda: mg.compare_categories(maps, g, "cat0", "nope")),
        ("the scan's categories are 'code', 'prose'", lambda: mg.category_differences(tiny_scan, "nope")),
        ("the maps' categories are 'code', 'prose'", lambda: tiny_maps.category_fractions(0, ["nope"])),
    ]
    for tail, call in calls:
        with pytest.raises(CategoryError) as info:
            call()
        assert str(info.value) == f"unknown category 'nope'; {tail}"
        assert isinstance(info.value, GraphError) and isinstance(info.value, ml.ScanError)
        assert isinstance(info.value, ml.CorpusError) and isinstance(info.value, ValueError)
    with pytest.raises(CategoryError, match=r"^unknown categories 'x', 'y'; the graph's categories are 'cat0'$"):
        check_categories(["x", "cat0", "y"], ["cat0"], "the graph")
    with pytest.raises(CategoryError, match=r"^unknown category 'x'; the graph has no categories$"):
        check_categories(["x"], [], "the graph")
    assert check_categories("cat0", ["cat0"], "the graph") == ["cat0"]
