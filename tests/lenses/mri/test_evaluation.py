"""Full against reduced features (``ml.mri.evaluate_reduction``) on real tiny-LM scans: the splits are
scikit-learn's, every score equals a direct ``cross_validate`` of the same classifier on the same data, the
reference's comparison ("all") is reproduced by hand, and the result saves, loads and draws."""

from __future__ import annotations

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.errors import CategoryError, ScanError, ScanFileError
from mri_lens.lenses.mri.evaluation import METRICS, ReductionEvaluation, evaluate_reduction
from mri_lens.lenses.mri.regions import RegionMaps

SEED = 42


class PcaMaps:
    """Documents-mode maps as the shared contract describes them, filled from scikit-learn's PCA of each layer's
    standardised pooled activations (``coordinates(layer)`` ``[n_docs, n_components]``)."""

    mode, reducer, has_grid = "documents", "pca", False

    def __init__(self, scan, n_components: int, pooling: str = "mean"):
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        self.pooling, self.n_components = pooling, n_components
        self.layers, self.n_docs, self.labels = list(scan.layers), scan.n_docs, scan.labels
        self._coords = {l: PCA(n_components, random_state=0).fit_transform(
            StandardScaler().fit_transform(scan.pooled(pooling, layer=l))).astype(np.float32) for l in scan.layers}

    def coordinates(self, layer: int) -> np.ndarray:
        return self._coords[layer]


def _oracle(X, y, metrics=METRICS, n_splits=5, test_size=0.3, seed=SEED, max_iter=1000):
    """The reference's recipe written out: ``[n_metrics, n_splits]``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    splits = list(StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed).split(X, y))
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    cv = cross_validate(pipe, np.asarray(X, np.float64), y, cv=splits, scoring={m: m for m in metrics})
    return np.stack([cv[f"test_{m}"] for m in metrics])


@pytest.fixture(scope="module")
def pca_maps(five_scan):
    return PcaMaps(five_scan, n_components=3)


@pytest.fixture(scope="module")
def ev(five_scan, pca_maps):
    return evaluate_reduction(five_scan, pca_maps, concatenated=True, progress=False)


def test_splits_are_scikit_learns(ev, five_scan):
    """One set of stratified shuffle splits, scikit-learn's with the same seed, for every row."""
    from sklearn.model_selection import StratifiedShuffleSplit

    y = five_scan.labels
    want = list(StratifiedShuffleSplit(n_splits=5, test_size=0.3, random_state=SEED).split(np.zeros(len(y)), y))
    assert ev.train_idx.shape == (5, 84) and ev.test_idx.shape == (5, 36)
    for (tr, te), (wtr, wte) in zip(ev.splits(), want):
        np.testing.assert_array_equal(tr, wtr)
        np.testing.assert_array_equal(te, wte)
        assert np.bincount(y[te], minlength=5).min() >= 7  # stratified: about 30 % of each 24-document category


def test_scores_equal_cross_validate(ev, five_scan, pca_maps):
    """Each layer's full and reduced scores are a direct cross_validate on the pooled activations and on the
    map coordinates; the table's means, SDs and deltas are those of the per-split arrays."""
    y = five_scan.labels
    assert ev.rows == five_scan.layers + ["all"] and ev.metrics == list(METRICS)
    for i, l in enumerate(five_scan.layers):
        np.testing.assert_array_equal(ev.full[i], _oracle(five_scan.pooled("mean", layer=l), y))
        np.testing.assert_array_equal(ev.reduced[i], _oracle(pca_maps.coordinates(l), y))
        assert tuple(ev.n_features[i]) == (512, 3)
    t = ev.table
    assert len(t) == len(ev.rows) * len(METRICS)
    row = t[(t["layer"] == 2) & (t["metric"] == "balanced_accuracy")].iloc[0]
    i, j = ev.rows.index(2), ev.metrics.index("balanced_accuracy")
    d = ev.full[i, j] - ev.reduced[i, j]
    assert row["full_mean"] == pytest.approx(ev.full[i, j].mean())
    assert row["reduced_sd"] == pytest.approx(np.std(ev.reduced[i, j], ddof=1))
    assert row["delta_mean"] == pytest.approx(d.mean()) and row["delta_sd"] == pytest.approx(np.std(d, ddof=1))
    assert row["n_splits"] == 5 and row["comparison"] == "same layer"
    np.testing.assert_array_equal(ev.per_split["delta"], ev.full - ev.reduced)
    # five conditions from 512 pooled neurons: well above chance (0.2), and 3 components keep less than all 512
    full_ba = t[(t["metric"] == "balanced_accuracy") & (t["layer"] != "all")]
    assert (full_ba["full_mean"] > 0.35).all(), full_ba
    assert full_ba["delta_mean"].mean() > 0, full_ba


def test_concatenated_row_is_the_references_recipe(ev, five_scan, pca_maps):
    """Row "all": the last layer's pooled activations against every layer's components side by side, labelled
    as the reference's comparison."""
    y = five_scan.labels
    last = five_scan.layers[-1]
    xr = np.hstack([pca_maps.coordinates(l) for l in five_scan.layers])
    f, r = _oracle(five_scan.pooled("mean", layer=last), y), _oracle(xr, y)
    np.testing.assert_array_equal(ev.full[-1], f)
    np.testing.assert_array_equal(ev.reduced[-1], r)
    np.testing.assert_array_equal(ev.per_split["delta"][-1], f - r)
    assert tuple(ev.n_features[-1]) == (512, 3 * len(five_scan.layers))
    t = ev.table[ev.table["layer"] == "all"]
    assert len(t) == len(METRICS) and set(t["comparison"]) == {"reference: last layer full vs all layers reduced"}


def test_metrics_and_split_parameters(five_scan, pca_maps):
    ev = evaluate_reduction(five_scan, pca_maps, n_splits=3, test_size=0.25, seed=7, metrics="accuracy",
                            max_iter=200, progress=False)
    assert ev.rows == five_scan.layers and ev.metrics == ["accuracy"] and ev.full.shape == (4, 1, 3)
    l = five_scan.layers[1]
    np.testing.assert_array_equal(ev.full[1], _oracle(five_scan.pooled("mean", layer=l), five_scan.labels,
                                                      metrics=["accuracy"], n_splits=3, test_size=0.25, seed=7,
                                                      max_iter=200))
    with pytest.raises(ValueError, match="unknown scikit-learn scorer"):
        evaluate_reduction(five_scan, pca_maps, metrics=["accuracy", "not_a_metric"], progress=False)


def test_neurons_mode_uses_region_activations(tiny_maps, tiny_scan):
    """Neurons-mode maps with a grid: the reduced features are the documents' region activations."""
    ev = evaluate_reduction(tiny_scan, tiny_maps, n_splits=3, metrics=["balanced_accuracy"], progress=False)
    l = tiny_maps.layers[0]
    np.testing.assert_array_equal(ev.reduced[0], _oracle(tiny_maps.region_activation(l), tiny_scan.labels,
                                                         metrics=["balanced_accuracy"], n_splits=3))
    assert tuple(ev.n_features[0]) == (512, 25) and ev.params["mode"] == "neurons"


def test_real_pca_region_maps(five_scan):
    """Real documents-mode PCA maps: the reduced features are their coordinates."""
    maps = RegionMaps(mode="documents", reducer="pca", n_components=3, n_jobs=1).fit(five_scan, progress=False)
    ev = evaluate_reduction(five_scan, maps, n_splits=2, metrics=["accuracy"], progress=False)
    l = maps.layers[-1]
    np.testing.assert_array_equal(ev.reduced[-1], _oracle(maps.coordinates(l), five_scan.labels,
                                                          metrics=["accuracy"], n_splits=2))
    assert tuple(ev.n_features[-1]) == (512, 3) and ev.params["reducer"] == "pca"


def test_save_load_round_trip(ev, tmp_path, tiny_maps):
    out = ev.save(tmp_path / "ev")
    back = ReductionEvaluation.load(out)
    assert back.rows == ev.rows and back.metrics == ev.metrics and back.params == ev.params
    for name in ("full", "reduced", "train_idx", "test_idx", "n_features"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ev, name))
    assert back.table.equals(ev.table)
    with pytest.raises(ScanFileError):  # a save replaces only a saved result of its own kind
        ev.save(tiny_maps.save(tmp_path / "maps"))
    with pytest.raises(ScanFileError):
        ReductionEvaluation.load(tmp_path / "maps")
    ev.save(out)  # over itself: fine


def test_figure_and_display(ev):
    import plotly.graph_objects as go

    fig = ev.figure("f1_macro")
    assert isinstance(fig, go.Figure) and [t.name for t in fig.data] == ["full", "reduced", "delta"]
    t = ev.table[ev.table["metric"] == "f1_macro"]
    np.testing.assert_allclose(fig.data[0].error_y.array, t["full_sd"])
    np.testing.assert_allclose(fig.data[2].y, t["delta_mean"])
    assert list(fig.data[0].x)[-1] == "all (reference)"
    with pytest.raises(ValueError, match="was not evaluated"):
        ev.figure("roc_auc")
    assert "<table" in ev._repr_html_() and "ReductionEvaluation" in repr(ev)
    assert ev.to_pandas().equals(ev.table)


def test_errors(tiny, tiny_scan, five_scan, pca_maps, code_prose):
    unlabelled = ml.scan(tiny, ml.Corpus(code_prose.texts[:6]), progress=False)
    with pytest.raises(ScanError, match="labelled"):
        evaluate_reduction(unlabelled, PcaMaps(unlabelled, 2), progress=False)
    with pytest.raises(ScanError, match="documents"):
        evaluate_reduction(tiny_scan, pca_maps, progress=False)
    one = ml.scan(tiny, ml.Corpus(code_prose.texts[:6], ["code"] * 6), progress=False)
    with pytest.raises(CategoryError, match="two categories"):
        evaluate_reduction(one, PcaMaps(one, 2), progress=False)
    lone = ml.scan(tiny, ml.Corpus(code_prose.texts[:6], ["code"] * 5 + ["prose"]), progress=False)
    with pytest.raises(CategoryError, match="two documents"):
        evaluate_reduction(lone, PcaMaps(lone, 2), progress=False)
    pair = ml.scan(tiny, ml.Corpus(code_prose.texts[:5], ["code"] * 3 + ["prose"] * 2), progress=False)
    with pytest.raises(CategoryError, match="cannot be split"):
        evaluate_reduction(pair, PcaMaps(pair, 2), test_size=0.2, progress=False)
    no_grid = RegionMaps(mode="neurons", reducer="pca", n_components=3, n_jobs=1).fit(tiny_scan, progress=False)
    with pytest.raises(ScanError, match="without a grid"):
        evaluate_reduction(tiny_scan, no_grid, progress=False)
