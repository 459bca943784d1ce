"""The component graph: Spearman correlations of neighbouring layers' components (equal to scipy's, ties
included), both threshold rules on planted scores, per-category edges, determinism, files, figure, errors."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
from scipy.stats import spearmanr

from mri_lens.errors import CategoryError, GraphError, ScanFileError
from mri_lens.lenses import mri as mg
from mri_lens.lenses.mri.components import spearman_matrix
from mri_lens.lenses.mri.regions import RegionMaps

from .builders import node_link, random_maps


class ScoreMaps:
    """Fitted documents-mode maps as the component graph reads them (the contract's attributes), from given
    component scores ``{layer: [n_docs, k]}``."""

    mode = "documents"

    def __init__(self, scores: dict, labels=None, label_names=None, reducer="pca", evr=None):
        self.layers_ = list(scores)
        self.coords_ = np.stack([np.asarray(s, dtype=np.float32) for s in scores.values()])
        self.n_docs_, self.n_components = self.coords_.shape[1], self.coords_.shape[2]
        self.labels_ = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.label_names_ = label_names
        self.reducer = reducer
        self.explained_variance_ratio_ = evr

    def coordinates(self, layer):
        return self.coords_[self.layers_.index(layer)]


def pca_maps(scan, k=4) -> ScoreMaps:
    """scikit-learn PCA of each layer's standardised mean-pooled activations, with the maps' sign rule (in each
    component the loading of largest |value| is positive)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    scores, evr = {}, []
    for layer in scan.layers:
        z = StandardScaler().fit_transform(scan.pooled("mean", layer=layer))
        p = PCA(k, svd_solver="full").fit(z)
        sign = np.sign(p.components_[np.arange(k), np.abs(p.components_).argmax(axis=1)])
        s = p.transform(z) * sign
        scores[layer] = s
        evr.append(p.explained_variance_ratio_)
    return ScoreMaps(scores, scan.labels, list(scan.label_names), evr=np.array(evr, dtype=np.float32))


def scipy_rho(x, y) -> float:
    r = spearmanr(x, y).statistic
    return float(r)


def test_spearman_matrix_is_scipys_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (40, 3)).astype(np.float64)  # few values: many ties
    y = np.column_stack([rng.integers(0, 3, 40), rng.normal(size=40), x[:, 0] * 2 + rng.integers(0, 2, 40),
                         np.full(40, 7.0)])  # the last column is constant
    rho = spearman_matrix(x, y)
    assert rho.shape == (3, 4)
    for i in range(3):
        for j in range(3):
            assert rho[i, j] == pytest.approx(scipy_rho(x[:, i], y[:, j]), abs=1e-12)
    assert np.isnan(rho[:, 3]).all()  # constant column: undefined
    assert np.isnan(spearman_matrix(x[:1], y[:1])).all()  # one document: undefined


@pytest.fixture(scope="module")
def score_maps(tiny_scan):
    return pca_maps(tiny_scan, k=4)


@pytest.mark.parametrize("decimals", [None, 0])
def test_edges_are_scipys_spearman(score_maps, decimals):
    """Every edge's rho (all documents and per category) is scipy's on the same scores; exactly the pairs that
    pass the threshold are edges; scores rounded to integers test ties."""
    maps = score_maps
    if decimals is not None:
        maps = ScoreMaps({l: np.round(maps.coordinates(l), decimals) for l in maps.layers_}, maps.labels_,
                         maps.label_names_)
    cats = maps.label_names_
    t = 0.3
    g = mg.component_graph(maps, threshold=t)
    assert g.graph["categories"] == cats and g.graph["n_components"] == 4
    if decimals is not None:
        assert any(len(np.unique(maps.coordinates(l)[:, 0])) < maps.n_docs_ / 2 for l in maps.layers_)
    sels = [("", np.ones(maps.n_docs_, bool))] + [(f"_{c}", maps.labels_ == i) for i, c in enumerate(cats)]
    # A rank correlation can equal the threshold exactly (a ratio of integers): such a pair may fall either side
    # by rounding in scipy, so it is left out of the comparison (the strict test is on planted scores below).
    eps = 1e-9
    expected, borderline = set(), set()
    for a, b in zip(maps.layers_, maps.layers_[1:]):
        x, y = maps.coordinates(a), maps.coordinates(b)
        for i in range(4):
            for j in range(4):
                e = ((a, i), (b, j))
                rhos = {s: scipy_rho(x[m, i], y[m, j]) for s, m in sels}
                if any(abs(r) > t + eps for r in rhos.values()):
                    expected.add(e)
                elif any(abs(abs(r) - t) <= eps for r in rhos.values()):
                    borderline.add(e)
                if not g.has_edge(*e):
                    continue
                d = g.edges[e]
                for s, r in rhos.items():
                    assert d[f"rho{s}"] == pytest.approx(r, abs=eps)
                    if abs(abs(r) - t) > eps:
                        assert d[f"weight{s}"] == (pytest.approx(abs(r), abs=eps) if abs(r) > t else 0)
    assert expected and expected <= set(g.edges) <= expected | borderline


def _planted() -> ScoreMaps:
    """Five documents; layer 0: component 0 = 1..5, component 1 constant; layer 2: component 0 has rho = 0.5
    exactly with layer 0's component 0 (ranks 2 1 5 4 3), component 1 has rho = -1 with it."""
    x = np.arange(1, 6, dtype=np.float64)
    l0 = np.column_stack([x, np.full(5, 3.0)])
    l2 = np.column_stack([[2, 1, 5, 4, 3], -x])
    return ScoreMaps({0: l0, 2: l2})


def test_threshold_rules_on_planted_scores():
    maps = _planted()
    g = mg.component_graph(maps, threshold=0.3)
    assert list(g.nodes) == [(0, 0), (0, 1), (2, 0), (2, 1)]
    assert all(type(v) is int for u in g.nodes for v in u)
    assert list(g.edges) == [((0, 0), (2, 0)), ((0, 0), (2, 1))]  # the constant component has no edge
    assert g.edges[(0, 0), (2, 0)] == {"rho": 0.5, "weight": 0.5}
    assert g.edges[(0, 0), (2, 1)] == {"rho": -1.0, "weight": 1.0}  # a negative correlation is a link
    assert g.graph["categories"] == [] and g.graph["params"] == {"threshold": 0.3, "positive_only": False,
                                                                  "categories": None}
    pos = mg.component_graph(maps, threshold=0.3, positive_only=True)  # LLM-MRI's rule
    assert list(pos.edges(data=True)) == [((0, 0), (2, 0), {"rho": 0.5, "weight": 0.5})]
    # strict: rho == threshold does not pass
    assert list(mg.component_graph(maps, threshold=0.5).edges) == [((0, 0), (2, 1))]
    assert list(mg.component_graph(maps, threshold=0.49).edges) == [((0, 0), (2, 0)), ((0, 0), (2, 1))]
    assert not mg.component_graph(maps, threshold=0.5, positive_only=True).number_of_edges()


def test_category_edges_and_undefined_rho():
    """All documents: rho 0.26 (below 0.3); category a: rho 1; category b: layer 0 constant (undefined)."""
    l0 = np.array([[1, 2, 3, 4, 5, 0, 0, 0, 0, 0]], dtype=np.float64).T
    l1 = np.array([[1, 2, 3, 4, 5, 5, 4, 3, 2, 1]], dtype=np.float64).T
    maps = ScoreMaps({3: l0, 4: l1}, labels=[0] * 5 + [1] * 5, label_names=["a", "b"])
    g = mg.component_graph(maps)
    d = g.edges[(3, 0), (4, 0)]
    assert d["rho"] == pytest.approx(scipy_rho(l0[:, 0], l1[:, 0])) and abs(d["rho"]) < 0.3
    assert d["weight"] == 0 and d["rho_a"] == pytest.approx(1.0) and d["weight_a"] == pytest.approx(1.0)
    assert "rho_b" not in d and d["weight_b"] == 0
    assert g.graph["category_sizes"] == {"a": 5, "b": 5}
    only_b = mg.component_graph(maps, categories=["b"])
    assert only_b.graph["categories"] == ["b"] and only_b.graph["params"]["categories"] == ["b"]
    assert not only_b.number_of_edges()  # neither all documents nor b pass
    with pytest.raises(CategoryError, match="'c'"):
        mg.component_graph(maps, categories=["c"])


def test_deterministic(score_maps):
    def text(g):  # node-link JSON in the graph's own order
        return json.dumps(nx.node_link_data(g, edges="edges"))

    assert text(mg.component_graph(score_maps)) == text(mg.component_graph(score_maps))
    g = mg.component_graph(score_maps)
    assert list(g.edges) == sorted(g.edges) and list(g.nodes) == sorted(g.nodes)
    assert mg.component_graph_figure(g).to_json() == mg.component_graph_figure(g).to_json()


def test_files_round_trip(tmp_path, score_maps):
    g = mg.component_graph(score_maps, threshold=0.2)
    assert g.number_of_edges() and g.graph["kind"] == "mri_lens.component_graph"
    h = mg.load_graph_json(mg.write_graph(g, tmp_path / "g.json"))
    assert node_link(h) == node_link(g) and h.graph == g.graph
    assert list(h.nodes(data=True)) == list(g.nodes(data=True)) and all(isinstance(u, tuple) for u in h.nodes)
    assert list(h.edges(data=True)) == list(g.edges(data=True))
    mg.write_graph(g, tmp_path / "g.json")  # replaces its own kind
    gml = nx.read_graphml(mg.write_graph(g, tmp_path / "g.graphml"))
    assert list(gml.nodes) == [f"L{l}_C{c}" for l, c in g.nodes]
    assert json.loads(gml.graph["layers"]) == g.graph["layers"]
    gexf = nx.read_gexf(mg.write_graph(g, tmp_path / "g.gexf"))
    assert list(gexf.edges) == [(f"L{u[0]}_C{u[1]}", f"L{v[0]}_C{v[1]}") for u, v in g.edges]
    for (l, c), d in g.nodes(data=True):
        e = gexf.nodes[f"L{l}_C{c}"]
        assert (e["layer"], e["component"], e["label"]) == (l, c, f"layer {l} component {c}")
    for u, v, d in g.edges(data=True):
        e = gexf.edges[f"L{u[0]}_C{u[1]}", f"L{v[0]}_C{v[1]}"]
        assert e["rho"] == pytest.approx(d["rho"]) and e["weight"] == pytest.approx(d["weight"])
    # a save replaces only a graph file of its own kind
    with pytest.raises(ScanFileError, match="component graph"):
        mg.write_graph(mg.coactivation_graph(random_maps(0)), tmp_path / "g.json")


def test_errors():
    with pytest.raises(GraphError, match="'neurons'"):
        mg.component_graph(RegionMaps(mode="neurons"))
    with pytest.raises(GraphError, match="not fitted"):
        mg.component_graph(RegionMaps(mode="documents"))
    maps = _planted()
    for bad in (1.0, -0.1, float("nan"), True, "0.3"):
        with pytest.raises(GraphError, match="threshold"):
            mg.component_graph(maps, threshold=bad)
    with pytest.raises(GraphError, match="no labels"):
        mg.component_graph(maps, categories=["a"])
    with pytest.raises(GraphError, match="not a component graph"):
        mg.component_graph_figure(mg.coactivation_graph(random_maps(0)))


def test_figure():
    l0 = np.array([[1, 2, 3, 4, 5, 0, 0, 0, 0, 0]], dtype=np.float64).T
    l1 = np.column_stack([[1, 2, 3, 4, 5, 5, 4, 3, 2, 1], -np.arange(10.0), np.arange(10.0) % 3])
    l0 = np.column_stack([l0[:, 0], np.arange(10.0), np.arange(10.0) % 3])
    maps = ScoreMaps({0: l0, 1: l1}, labels=[0] * 5 + [1] * 5, label_names=["a", "<b>"])
    g = mg.component_graph(maps)
    fig = mg.component_graph_figure(g, width_bins=4, max_width=8.0)
    nodes = next(t for t in fig.data if t.name == "components")
    assert list(nodes.x) == [0, 0, 0, 1, 1, 1] and list(nodes.y) == [0, -1, -2, 0, -1, -2]
    lines = [t for t in fig.data if t.mode == "lines"]
    drawn = {(t.x[i], t.y[i], t.x[i + 1], t.y[i + 1]): t for t in lines for i in range(0, len(t.x), 3)}
    all_docs = [(u, v, d) for u, v, d in g.edges(data=True) if d["weight"] > 0]
    assert len(drawn) == len(all_docs)  # only edges passing for all documents
    for u, v, d in all_docs:
        t = drawn[(0, -u[1], 1, -v[1])]
        red = t.line.color.startswith("rgb(") and _rgb(t.line.color)[0] > _rgb(t.line.color)[2]
        assert red == (d["rho"] > 0)  # red: positive, blue: negative
    strongest = drawn[(0, -1, 1, -1)]  # rho = -1
    assert strongest.line.width == 8.0 and strongest.name == "-1.00 to -0.82"
    hover = dict(zip([(u, v) for u, v, _ in all_docs], next(t for t in fig.data if t.name == "edges").hovertext))
    d = g.edges[(0, 1), (1, 1)]
    assert hover[(0, 1), (1, 1)] == (f"L0 c1 -> L1 c1<br>rho (all documents): -1.000<br>rho (a): -1.000"
                                     f"<br>rho (&lt;b&gt;): {d['rho_<b>']:+.3f}")  # category names escaped
    fa = mg.component_graph_figure(g, category="a")
    drawn_a = {(t.x[i], t.y[i], t.x[i + 1], t.y[i + 1]) for t in fa.data if t.mode == "lines"
               for i in range(0, len(t.x), 3)}
    assert drawn_a == {(0, -u[1], 1, -v[1]) for u, v, d in g.edges(data=True) if d["weight_a"] > 0}
    assert (0, 0, 1, 0) in drawn_a  # passes for category a only
    with pytest.raises(CategoryError):
        mg.component_graph_figure(g, category="c")


def _rgb(s: str) -> tuple[int, ...]:
    return tuple(int(float(v)) for v in s[s.index("(") + 1: s.index(")")].split(","))


@pytest.mark.skipif(not hasattr(RegionMaps, "coordinates"), reason="RegionMaps has no N-D reducers yet")
def test_real_pca_maps(tiny_scan):
    maps = RegionMaps(mode="documents", reducer="pca", n_components=4, n_jobs=1).fit(tiny_scan, progress=False)
    g = mg.component_graph(maps, threshold=0.0)
    assert list(g.nodes) == [(l, c) for l in maps.layers_ for c in range(4)]
    assert g.graph["reducer"] == "pca" and g.graph["n_components"] == 4
    a, b = maps.layers_[:2]
    x, y = maps.coordinates(a), maps.coordinates(b)
    for i in range(4):
        for j in range(4):
            r = scipy_rho(x[:, i], y[:, j])
            assert g.edges[(a, i), (b, j)]["rho"] == pytest.approx(r, abs=1e-9)
    for (l, c), d in g.nodes(data=True):
        assert d["explained_variance_ratio"] == pytest.approx(float(maps.explained_variance_ratio_[
            maps.layers_.index(l)][c]))
