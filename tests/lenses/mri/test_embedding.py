"""UMAP plumbing of the region maps: exact nearest neighbours, the warm-up of the worker processes, numba's cache."""

from __future__ import annotations

import numpy as np

import mri_lens as ml
from mri_lens.lenses.mri.embedding import exact_knn
from mri_lens.lenses.mri.regions import RegionMaps


def test_exact_knn_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 7))
    idx, dist = exact_knn(x, 6, block=64)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    expect = np.argsort(d, 1, kind="stable")[:, :6]
    assert np.array_equal(idx, expect)
    assert np.allclose(dist, np.take_along_axis(d, expect, 1), atol=1e-5)
    assert np.array_equal(idx[:, 0], np.arange(300))


def test_warm_up_then_fit_reuses_the_workers(tiny_scan, tiny_maps):
    t = ml.mri.warm_up(n_jobs=2, n_layers=4)
    t.join(timeout=300)
    assert not t.is_alive()
    par = RegionMaps.fit(tiny_scan, grid=5, seed=0, n_jobs=2, progress=False)
    assert np.array_equal(par.coords_, tiny_maps.coords_)
    assert not ml.mri.warm_up(n_jobs=1).is_alive()  # nothing to start for one job


def test_umap_numba_functions_are_cached_on_disk():
    from numba.core.dispatcher import Dispatcher

    from mri_lens.lenses.mri.embedding import _import_umap

    umap = _import_umap()
    jitted = [o for m in (umap.umap_, umap.layouts) for o in vars(m).values() if isinstance(o, Dispatcher)]
    assert jitted and all(type(o._cache).__name__ != "NullCache" for o in jitted)
