"""Region maps (MRI lens): grid, activation rule, alignment, determinism, categories, save/load, bad inputs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.lenses.mri.geometry import _procrustes, standardise
from mri_lens.lenses.mri.probe import separability
from mri_lens.lenses.mri.regions import RegionMaps

from saved import data_path


def test_grid_is_full_and_consistent(tiny_maps, tiny_scan):
    m = tiny_maps
    assert m.layers == tiny_scan.layers and m.n_regions == 25
    assert m.coords_.shape == (tiny_scan.n_layers, tiny_scan.d_mlp, 2)
    assert m.cell_.min() >= 0 and m.cell_.max() < 25
    for l in m.layers:
        sizes = m.region_sizes(l)
        assert sizes.sum() == tiny_scan.d_mlp and len(sizes) == 25
        # every neuron is listed in exactly its region
        members = np.concatenate([m.region_neurons(l, r) for r in range(25)])
        assert np.array_equal(np.sort(members), np.arange(tiny_scan.d_mlp))
    # cells follow the stored edges: a point's column is the x bin it falls in (border cells take the outliers)
    li = 1
    c, xe = m.coords_[li], m.x_edges_[li]
    col = m.cell_[li] % 5
    inside = (c[:, 0] > xe[0]) & (c[:, 0] < xe[-1])
    assert np.all(xe[col[inside]] <= c[inside, 0]) and np.all(c[inside, 0] <= xe[col[inside] + 1])


def test_activation_rule_zscore_matches_definition(tiny_maps, tiny_scan):
    m = tiny_maps
    l = m.layers[2]
    z = standardise(tiny_scan.pooled("mean", layer=l))
    ra = np.zeros((tiny_scan.n_docs, 25))
    for r in range(25):
        nn = m.region_neurons(l, r)
        if len(nn):
            ra[:, r] = z[:, nn].mean(1)
    assert np.allclose(m.region_activation(l), ra, atol=1e-5)
    sd = ra.std(0)
    live = (m.region_sizes(l) > 0) & (sd > 1e-6)
    zz = (ra - ra.mean(0)) / np.where(sd > 0, sd, 1)
    expect = (zz >= 1.0 - 1e-9) & live
    assert np.array_equal(m.activated(l), expect)
    assert m.activated(l).any()


def test_quantile_rule_and_binning(tiny_scan):
    m = RegionMaps.fit(tiny_scan, grid=4, rule="quantile", threshold=0.75, binning="quantile", seed=0, n_jobs=1, progress=False,
                       align=False)
    for l in m.layers:
        act = m.activated(l)
        live = m.region_sizes(l) > 0
        # strictly above the 0.75 quantile: at most a quarter of the documents, and most live regions have some
        assert act[:, live].mean(0).max() <= 0.25 + 1e-9
        assert (act[:, live].sum(0) > 0).mean() > 0.8
        # quantile bins: every column and row holds about a quarter of the neurons
        li = m.layer_index(l)
        cols = np.bincount(m.cell_[li] % 4, minlength=4)
        rows = np.bincount(m.cell_[li] // 4, minlength=4)
        assert cols.min() >= 0.2 * tiny_scan.d_mlp and rows.min() >= 0.2 * tiny_scan.d_mlp


def test_same_seed_identical_different_seed_differs(tiny_scan, tiny_maps):
    again = RegionMaps.fit(tiny_scan, grid=5, seed=0, n_jobs=1, progress=False)
    for k in ("coords_", "cell_", "region_act_", "activated_", "thresholds_"):
        assert np.array_equal(getattr(again, k), getattr(tiny_maps, k)), k
    other = RegionMaps.fit(tiny_scan, grid=5, seed=1, n_jobs=1, progress=False, layers=[0])
    assert not np.array_equal(other.coords_[0], tiny_maps.coords_[0])


def test_parallel_equals_sequential(tiny_scan, tiny_maps):
    par = RegionMaps.fit(tiny_scan, grid=5, seed=0, n_jobs=2, progress=False)
    assert np.array_equal(par.coords_, tiny_maps.coords_)
    assert np.array_equal(par.activated_, tiny_maps.activated_)


def test_documents_mode(tiny_scan):
    m = RegionMaps.fit(tiny_scan, grid=4, mode="documents", seed=0, n_jobs=1, progress=False)
    assert m.coords_.shape == (tiny_scan.n_layers, tiny_scan.n_docs, 2)
    for l in m.layers:
        act = m.activated(l)
        assert np.array_equal(act.sum(1), np.ones(tiny_scan.n_docs))  # exactly one cell per document
        assert np.array_equal(act.argmax(1), m.cell_[m.layer_index(l)])
        assert len(m.region_neurons(l, 0)) == 0
    fig = m.scatter(m.layers[0])
    assert {t.name for t in fig.data} == {"code", "prose"}


def test_five_categories(five_scan):
    m = RegionMaps.fit(five_scan, grid=4, seed=0, n_jobs=1, progress=False, layers=[0, 1])
    assert len(m.label_names) == 5
    fr = m.category_fractions(0)
    assert set(fr) == set(m.label_names) and all(v.shape == (4, 4) for v in fr.values())
    fig = m.figure(1)
    assert sum(t.type == "heatmap" for t in fig.data) == 6  # five categories + the log-odds panel
    assert len(m.small_multiples(value="fraction").data) == 10
    df = m.regions(1)
    assert {f"frac_{n}" for n in m.label_names} <= set(df.columns)
    # the graph keeps every category's counts, none overwritten
    g = ml.mri.coactivation_graph(m, min_weight=1, enrichment=True)
    for u, v, d in g.edges(data=True):
        assert d["weight"] == sum(d[f"weight_{n}"] for n in m.label_names)
    fig = ml.mri.graph_figure(g)
    names = {t.name for t in fig.data}
    enriched = {f"enriched for {d['enriched_for']}" for *_, d in g.edges(data=True) if d["enriched_for"]}
    # an edge takes a category's colour only when enriched for it; the legend names each colour drawn
    assert len(fig.data) <= 40 and enriched <= names
    assert names <= {f"enriched for {n}" for n in m.label_names} | {"not enriched", "regions", "edges",
                                                                     "region no document activates"}
    cmp = ml.mri.compare_categories(m, g, m.label_names[0], m.label_names[1])
    assert len(cmp.regions) == 2 * m.n_regions


def test_one_category_and_unlabelled(tiny, code_prose):
    texts = list(code_prose.texts)
    s1 = ml.scan(tiny, ml.Corpus(texts, ["all"] * len(texts)), progress=False)
    m1 = RegionMaps.fit(s1, grid=3, seed=0, n_jobs=1, progress=False, layers=[0])
    assert len([t for t in m1.figure(0).data if t.type == "heatmap"]) == 1
    s0 = ml.scan(tiny, texts, progress=False)
    m0 = RegionMaps.fit(s0, grid=3, seed=0, n_jobs=1, progress=False, layers=[0])
    assert list(m0.category_fractions(0)) == ["all documents"]
    with pytest.raises(ml.ScanError, match="no labels"):
        m0.category_fractions(0, ["code"])
    with pytest.raises(ml.ScanError, match="labelled"):
        separability(m0, s0)


def test_procrustes_recovers_a_rotation():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(50, 2))
    target -= target.mean(0)
    theta = 1.1
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moving = (target @ rot) * np.array([1, -1])  # rotated and reflected
    R = _procrustes(moving, target, np.ones(50))
    assert np.allclose(moving @ R, target, atol=1e-9)


def test_alignment_brings_neighbouring_layers_closer(tiny_scan, tiny_maps):
    """With alignment, a neuron sits closer to its best-correlated neuron of the previous layer than without."""
    raw = RegionMaps.fit(tiny_scan, grid=5, seed=0, n_jobs=1, progress=False, align=False)
    gains = []
    for i in range(1, len(tiny_maps.layers)):
        z1 = standardise(tiny_scan.pooled("mean")[:, i])
        z0 = standardise(tiny_scan.pooled("mean")[:, i - 1])
        src, w = tiny_maps._correspondence(z1, z0)
        top = w > np.quantile(w, 0.9)

        def dist(mm):
            c = mm.coords_
            return np.linalg.norm(c[i][top] - c[i - 1][src[top]], axis=1).mean()

        gains.append(dist(raw) - dist(tiny_maps))
    assert np.mean(gains) > 0


def test_save_load_round_trip_and_corruption(tiny_maps, tmp_path):
    p = tiny_maps.save(tmp_path / "maps")
    back = RegionMaps.load(p)
    for k in ("coords_", "cell_", "region_act_", "activated_", "thresholds_", "labels_"):
        assert np.array_equal(getattr(back, k), getattr(tiny_maps, k)), k
    assert back.get_params() == tiny_maps.get_params() and back.label_names == tiny_maps.label_names
    assert np.array_equal(back.activated(2), tiny_maps.activated(2))
    with open(data_path(p), "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ml.ScanFileError, match="corrupted"):
        RegionMaps.load(p)
    with pytest.raises(ml.ScanFileError):
        RegionMaps.load(tmp_path / "nothing")


def test_load_refuses_a_scan_directory(tiny_scan, tmp_path):
    p = tiny_scan.save(tmp_path / "scan")
    with pytest.raises(ml.ScanFileError, match="not a saved mri_lens.region_maps"):
        RegionMaps.load(p)
    with open(os.path.join(p, "manifest.json")) as f:
        assert json.load(f)["format"] != "mri_lens.region_maps"


@pytest.mark.parametrize("kw, match", [
    ({"grid": 0}, "grid"), ({"mode": "cells"}, "mode"), ({"binning": "log"}, "binning"),
    ({"rule": "top"}, "rule"), ({"rule": "quantile", "threshold": 1.5}, "quantile"), ({"clip": 60}, "clip"),
])
def test_bad_parameters(tiny_scan, kw, match):
    with pytest.raises(ValueError, match=match):
        RegionMaps.fit(tiny_scan, n_jobs=1, progress=False, **kw)


def test_bad_inputs(tiny, tiny_scan):
    small = ml.scan(tiny, ["a b", "c d", "e f"], progress=False)
    with pytest.raises(ml.ScanError, match="at least 4 documents"):
        RegionMaps.fit(small, n_jobs=1, progress=False)
    with pytest.raises(ml.ScanError, match="was not scanned"):
        RegionMaps.fit(tiny_scan, layers=[7], n_jobs=1, progress=False)
    with pytest.raises(ValueError, match="not fitted"):
        RegionMaps(grid=3).activated(0)
    with pytest.raises(ml.ScanError, match="not mapped"):
        RegionMaps.fit(tiny_scan, layers=[0], grid=3, n_jobs=1, progress=False).activated(1)


def test_fit_shows_a_progress_bar_by_default(tiny_scan, capsys):
    RegionMaps.fit(tiny_scan, grid=3, seed=0, n_jobs=1, n_epochs=20, layers=[0])
    assert "region maps" in capsys.readouterr().err
    RegionMaps(grid=3, seed=0, n_jobs=1, n_epochs=20).fit(tiny_scan, layers=[0])
    assert "region maps" in capsys.readouterr().err
    RegionMaps.fit(tiny_scan, grid=3, seed=0, n_jobs=1, n_epochs=20, layers=[0], progress=False)
    assert "region maps" not in capsys.readouterr().err
