"""Region-map reducers: PCA and truncated SVD against scikit-learn (both modes, every scaling), the sign rule,
N-D maps without a grid, UMAP with more components, parameter checks, byte-identical saves and N-D save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.preprocessing import MinMaxScaler, StandardScaler

import mri_lens as ml
from mri_lens.lenses.mri.reducers import scale, sign_rule
from mri_lens.lenses.mri.regions import RegionMaps
from mri_lens.storage.integrity import SEAL_KEY

from saved import data_path, manifest, tree, write_manifest

LAYERS = [1, 3]


def fit(scan, **kw) -> RegionMaps:
    kw.setdefault("layers", LAYERS)
    return RegionMaps.fit(scan, grid=4, seed=0, n_jobs=1, progress=False, **kw)


def reference_points(scan, layer: int, mode: str, scaling: str) -> np.ndarray:
    """The points a reducer sees, built with scikit-learn's scalers: ``[n_points, n_features]`` float64 (through
    float32, the precision the maps keep their features in)."""
    x = scan.pooled("mean", layer=layer).astype(np.float64)
    if scaling == "zscore":
        x = StandardScaler().fit_transform(x)
    elif scaling == "minmax":
        x = MinMaxScaler().fit_transform(x)
    x = x.astype(np.float32).astype(np.float64)
    return x.T if mode == "neurons" else x


def signed(scores: np.ndarray, comps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sign rule written out: each component's largest-|value| loading positive."""
    scores, comps = scores.copy(), comps.copy()
    for k in range(comps.shape[0]):
        if comps[k, np.argmax(np.abs(comps[k]))] < 0:
            comps[k] *= -1
            scores[:, k] *= -1
    return scores, comps


def close(a: np.ndarray, b: np.ndarray, rel: float = 1e-5) -> bool:
    """Equal to ``rel`` of the reference's largest magnitude."""
    return np.allclose(a, b, rtol=0, atol=rel * float(np.abs(b).max()))


@pytest.mark.parametrize("reducer", ["pca", "svd"])
@pytest.mark.parametrize("mode, scaling, k", [("neurons", "zscore", 2), ("neurons", "minmax", 3),
                                              ("documents", "zscore", 3), ("documents", "none", 2),
                                              ("documents", "minmax", 4)])
def test_linear_reducers_equal_scikit_learn(tiny_scan, reducer, mode, scaling, k):
    m = fit(tiny_scan, mode=mode, reducer=reducer, n_components=k, scaling=scaling)
    n_points, n_feat = (tiny_scan.d_mlp, tiny_scan.n_docs) if mode == "neurons" else (tiny_scan.n_docs,
                                                                                       tiny_scan.d_mlp)
    assert m.coords_.dtype == np.float32 and m.coords_.shape == (len(LAYERS), n_points, k)
    assert m.components_.shape == (len(LAYERS), k, n_feat) and m.explained_variance_ratio_.shape == (len(LAYERS), k)
    assert m.has_grid == (k == 2) and not m.aligned  # PCA/SVD axes have a meaning: not rotated by default
    for i, layer in enumerate(LAYERS):
        x = reference_points(tiny_scan, layer, mode, scaling)
        est = (PCA(k, random_state=0) if reducer == "pca" else
               TruncatedSVD(k, algorithm="arpack", random_state=0))
        scores, comps = signed(est.fit_transform(x), est.components_)
        assert close(m.coordinates(layer), scores), (layer, np.abs(m.coordinates(layer) - scores).max())
        assert close(m.components_[i], comps)
        assert np.allclose(m.explained_variance_ratio_[i], est.explained_variance_ratio_, rtol=1e-4, atol=1e-7)
        # the scores are the (centred, for PCA) points projected on the components
        centred = x - x.mean(0) if reducer == "pca" else x
        assert close(m.coordinates(layer), centred @ m.components_[i].T.astype(np.float64), 1e-4)


def test_svd_is_exact_and_equals_pca_on_centred_features(tiny_scan):
    x = reference_points(tiny_scan, 2, "documents", "none")
    m = fit(tiny_scan, mode="documents", reducer="svd", n_components=3, scaling="none", layers=[2])
    u, s, vt = np.linalg.svd(x, full_matrices=False)  # exact LAPACK SVD: ARPACK must agree to precision
    scores, comps = signed(u[:, :3] * s[:3], vt[:3])
    assert close(m.coordinates(2), scores) and close(m.components_[0], comps)
    # z-scored documents-mode features are centred: SVD gives exact PCA's components (scikit-learn's own choice
    # of PCA solver for this size is randomized, so the comparison is with its full solver); neurons mode's differ
    for mode, same in (("documents", True), ("neurons", False)):
        x = reference_points(tiny_scan, 2, mode, "zscore")
        est = PCA(3, svd_solver="full")
        scores, comps = signed(est.fit_transform(x), est.components_)
        m = fit(tiny_scan, mode=mode, reducer="svd", n_components=3, layers=[2])
        assert close(m.coords_[0], scores) == same and close(m.components_[0], comps) == same


def test_sign_rule():
    rng = np.random.default_rng(0)
    comps = rng.normal(size=(3, 6))
    comps[0, 4] = -10.0  # largest |loading| of component 0 is negative: flipped
    comps[1, 2] = 10.0  # positive: kept
    scores = rng.normal(size=(5, 3))
    s2, c2 = sign_rule(scores, comps)
    assert c2[0, 4] == 10.0 and c2[1, 2] == 10.0
    assert np.array_equal(c2[0], -comps[0]) and np.array_equal(c2[1], comps[1])
    assert np.allclose(s2 @ c2, scores @ comps)  # the reconstruction does not change
    assert (np.abs(c2).argmax(1) == np.argmax(c2, 1)).all()


def test_fitted_loadings_follow_the_sign_rule(tiny_scan):
    for reducer in ("pca", "svd"):
        m = fit(tiny_scan, reducer=reducer, n_components=5)
        for comps in m.components_:
            top = comps[np.arange(5), np.abs(comps).argmax(1)]
            assert (top > 0).all()


def test_minmax_and_none_scaling():
    x = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, -2.0], [2.0, 5.0, 0.0]], np.float32)
    assert np.allclose(scale(x, "minmax"), [[0, 0, 1], [1, 0, 0], [0.5, 0, 0.5]])  # a constant column: 0
    assert np.array_equal(scale(x, "none"), x) and scale(x, "none") is not x
    z = scale(x, "zscore")
    assert np.allclose(z.mean(0), 0, atol=1e-6) and np.allclose(z[:, 1], 0)


def test_n_dimensional_maps_have_no_grid(tiny_scan):
    m = fit(tiny_scan, mode="documents", reducer="pca", n_components=5)
    assert not m.has_grid
    for k in ("cell_", "x_edges_", "y_edges_", "region_act_", "thresholds_", "activated_"):
        assert getattr(m, k) is None, k
    assert m.coordinates(3).shape == (tiny_scan.n_docs, 5) and m.coordinates(3).dtype == np.float32
    calls = [lambda: m.activated(1), lambda: m.region_activation(1), lambda: m.region_sizes(1),
             lambda: m.region_documents(1, 0), lambda: m.region_neurons(1, 0), lambda: m.figure(1),
             lambda: m.scatter(1), lambda: m.small_multiples(), lambda: m.regions(), lambda: m.document_regions(),
             lambda: m.log_odds(1, "code", "prose"), lambda: ml.mri.coactivation_counts(m)]
    for call in calls:
        with pytest.raises(ValueError, match=r"ml\.mri\.component_graph\(maps\)"):
            call()
    with pytest.raises(ml.ScanError, match="not mapped"):
        m.coordinates(0)
    assert "n_components=5" in repr(m) and "grid=" not in repr(m)
    html = m._repr_html_()
    assert "explained variance ratio 5" in html and "component_graph" in html
    fig = m.component_figure()
    lines = [t for t in fig.data if t.type == "scatter"]
    points = [t for t in fig.data if t.type == "scattergl"]
    assert len(lines) == 5 and np.allclose(lines[0].y, m.explained_variance_ratio_[:, 0])
    assert len(points) == 2 * len(LAYERS)  # two categories per layer
    assert sum(len(t.x) for t in points) == tiny_scan.n_docs * len(LAYERS)


def test_umap_with_more_components(tiny_scan):
    m = fit(tiny_scan, mode="documents", n_components=3, n_epochs=30)
    assert m.coords_.shape == (len(LAYERS), tiny_scan.n_docs, 3) and not m.has_grid and not m.aligned
    assert m.components_ is None and m.explained_variance_ratio_ is None
    c = m.coords_.astype(np.float64)
    assert np.allclose(c.mean(1), 0, atol=1e-5) and np.allclose((c ** 2).sum(2).mean(1), 1, atol=1e-4)
    again = fit(tiny_scan, mode="documents", n_components=3, n_epochs=30)
    assert np.array_equal(again.coords_, m.coords_)
    assert "standard deviation 3" in m._repr_html_()
    assert len(m.component_figure().data) == 2 * len(LAYERS)
    one = fit(tiny_scan, mode="documents", reducer="pca", n_components=1)
    assert one.coords_.shape[2] == 1 and len(one.component_figure().data) == 1 + 2 * len(LAYERS)


def test_two_component_linear_maps_have_the_grid(tiny_scan, tiny_maps):
    assert tiny_maps.align is None and tiny_maps.aligned  # UMAP with 2 components: aligned by default
    m = fit(tiny_scan, reducer="pca")
    raw = m.coords_.copy()
    assert m.has_grid and m.activated(1).shape == (tiny_scan.n_docs, 16)
    assert m.scatter(1).layout.xaxis.title.text == "PC 1"
    # aligned on request: an orthogonal transform of the component scores of every layer after the first
    al = fit(tiny_scan, reducer="pca", align=True)
    assert np.array_equal(al.coords_[0], raw[0]) and not np.allclose(al.coords_[1], raw[1])
    r, *_ = np.linalg.lstsq(raw[1].astype(np.float64), al.coords_[1].astype(np.float64), rcond=None)
    assert np.allclose(r @ r.T, np.eye(2), atol=1e-4)
    assert np.allclose(al.explained_variance_ratio_, m.explained_variance_ratio_)


@pytest.mark.parametrize("kw, match", [
    ({"reducer": "tsne"}, "reducer"), ({"n_components": 0}, "n_components"), ({"n_components": 2.0}, "n_components"),
    ({"n_components": True}, "n_components"), ({"scaling": "log"}, "scaling"),
    ({"align": True, "n_components": 3}, "align"), ({"align": "yes"}, "align"),
    ({"mode": "documents", "reducer": "pca", "n_components": 33}, "n_components"),
    ({"reducer": "pca", "n_components": 33}, "n_components"),
    ({"mode": "documents", "reducer": "svd", "n_components": 32}, "n_components"),
    ({"mode": "documents", "n_components": 40}, "n_components"),
])
def test_bad_parameters(tiny_scan, kw, match):
    m = RegionMaps(grid=4, n_jobs=1, **kw)
    with pytest.raises(ValueError, match=match):
        m.fit(tiny_scan, progress=False)
    assert not hasattr(m, "layers_")  # refused before anything was read or fitted


def test_n_components_up_to_the_data_size(tiny_scan):
    m = fit(tiny_scan, mode="documents", reducer="pca", n_components=tiny_scan.n_docs, layers=[2])
    assert m.coords_.shape == (1, tiny_scan.n_docs, tiny_scan.n_docs)
    assert m.explained_variance_ratio_.sum() == pytest.approx(1.0, abs=1e-5)


def canonical(data: bytes) -> bytes:
    """A safetensors file with its JSON header's keys sorted (the writer's key order is not fixed); the tensors'
    bytes as they are."""
    n = int.from_bytes(data[:8], "little")
    return json.dumps(json.loads(data[8:8 + n]), sort_keys=True).encode() + data[8 + n:]


def saved_files(path) -> dict[str, bytes]:
    """Every file of a saved result, its path and bytes with the name of the data version it belongs to (unique to
    each write, and named inside the data file too) replaced by a placeholder; the manifest without its seal and
    the data files' hashes, which cover that name."""
    version = manifest(path)["version"]
    files = {k.replace(version, "VERSION"): (canonical(v) if k.endswith(".safetensors") else v)
             .replace(version.encode(), b"VERSION") for k, v in tree(path).items() if k != "manifest.json"}
    man = {k: v for k, v in manifest(path).items() if k != SEAL_KEY}
    for spec in man["files"].values():
        del spec["sha256"]
    files["manifest.json"] = json.dumps(man, sort_keys=True).replace(version, "VERSION").encode()
    return files


@pytest.mark.parametrize("kw", [dict(n_epochs=30), dict(n_components=3, n_epochs=30, mode="documents"),
                                dict(reducer="pca"), dict(reducer="pca", n_components=4, scaling="none"),
                                dict(reducer="svd", n_components=3, mode="documents", scaling="minmax")])
def test_same_seed_gives_byte_identical_saves(tiny_scan, tmp_path, kw):
    a, b = fit(tiny_scan, **kw), fit(tiny_scan, **kw)
    pa, pb = a.save(tmp_path / "a"), b.save(tmp_path / "b")
    fa, fb = saved_files(pa), saved_files(pb)
    assert sorted(fa) == sorted(fb) and len(fa) >= 3  # the manifest, the version folder, its data file
    for name in fa:
        assert fa[name] == fb[name], name


@pytest.mark.parametrize("kw", [dict(reducer="pca", n_components=np.int64(4)),
                                dict(n_components=3, n_epochs=30, mode="documents"),
                                dict(reducer="svd", mode="documents", scaling="minmax")])
def test_save_load_round_trip(tiny_scan, tmp_path, kw):
    m = fit(tiny_scan, **kw)
    back = RegionMaps.load(m.save(tmp_path / "maps"))
    assert back.get_params() == m.get_params() and back.has_grid == m.has_grid
    for k in ("coords_", "components_", "explained_variance_ratio_", "cell_", "activated_", "thresholds_",
              "region_act_", "labels_", "neuron_category_means_"):
        a, b = getattr(m, k), getattr(back, k)
        assert (a is None and b is None) or np.array_equal(a, b), k
    assert np.array_equal(back.coordinates(3), m.coordinates(3))
    if not m.has_grid:
        with pytest.raises(ValueError, match="component_graph"):
            back.activated(1)


def test_corrupt_foreign_and_inconsistent_files_are_refused(tiny_scan, tmp_path):
    m = fit(tiny_scan, reducer="pca", n_components=3)
    p = m.save(tmp_path / "maps")
    man = manifest(p)
    man["meta"]["params"]["n_components"] = 2  # says the maps have a grid: arrays missing
    write_manifest(p, man)
    with pytest.raises(ml.ScanFileError, match="not consistent saved region maps"):
        RegionMaps.load(p)
    man["meta"]["params"]["n_components"] = 4  # disagrees with the saved shapes
    write_manifest(p, man)
    with pytest.raises(ml.ScanFileError, match="not consistent"):
        RegionMaps.load(p)
    man["meta"]["params"].update(n_components=3, reducer="umap")  # UMAP maps hold no components
    write_manifest(p, man)
    with pytest.raises(ml.ScanFileError, match="not consistent"):
        RegionMaps.load(p)
    p = m.save(tmp_path / "maps2")
    with open(data_path(p), "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ml.ScanFileError, match="corrupted"):
        RegionMaps.load(p)
    with pytest.raises(ml.ScanFileError, match="not a saved mri_lens.region_maps"):
        RegionMaps.load(tiny_scan.save(tmp_path / "scan"))


def test_schema_2_maps_still_load(tiny_scan, tmp_path):
    """A file as the previous release wrote it: schema 2, no reducer parameters, ``align`` saved as True."""
    m = fit(tiny_scan, n_epochs=30)
    p = m.save(tmp_path / "maps")
    man = manifest(p)
    man["schema_version"] = 2
    for k in ("reducer", "n_components", "scaling"):
        del man["meta"]["params"][k]
    man["meta"]["params"]["align"] = True
    write_manifest(p, man)
    back = RegionMaps.load(p)
    assert back.reducer == "umap" and back.n_components == 2 and back.has_grid and back.aligned
    assert np.array_equal(back.activated(1), m.activated(1)) and back.components_ is None


def test_minilm_documents_pca_on_raw_activations(minilm, reviews):
    """LLM-MRI's N-D setting on a real encoder: documents as points, raw features, more components than 2."""
    scan = ml.scan(minilm, reviews.subset(range(24)), pooling=("mean",), progress=False)
    m = RegionMaps.fit(scan, mode="documents", reducer="pca", n_components=6, scaling="none", layers=[0, 5],
                       seed=0, progress=False)
    for i, layer in enumerate([0, 5]):
        x = scan.pooled("mean", layer=layer).astype(np.float32).astype(np.float64)
        est = PCA(6, random_state=0)
        scores, comps = signed(est.fit_transform(x), est.components_)
        assert close(m.coordinates(layer), scores) and close(m.components_[i], comps)
        assert np.all(np.diff(m.explained_variance_ratio_[i]) <= 1e-7)  # in decreasing order


def _embed_in_fresh_process(points):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from mri_lens.lenses.mri.embedding import _embed

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_embed, points, 15, 0.1, 200, 0).result()


def test_umap_of_many_identical_points_is_the_same_in_every_process():
    """Points in a few groups of identical ones (first-token pooling of texts that start alike): umap-learn's
    spectral start of the graph it lays out (which falls apart) differed between processes with the same seed."""
    from mri_lens.lenses.mri.embedding import _import_umap, _start, exact_knn

    rng = np.random.default_rng(0)
    points = np.repeat(rng.normal(size=(18, 8)), rng.integers(1, 7, size=18), axis=0).astype(np.float32)
    assert _start(_import_umap(), points, exact_knn(points, 15), 15, 200) == "pca"  # the case guarded here
    a, b = _embed_in_fresh_process(points), _embed_in_fresh_process(points)
    assert a.shape == (len(points), 2) and np.array_equal(a, b)
