"""A Ray scan of SAE latents equals one process (the SAE travels to the workers once, through the object store)."""

from __future__ import annotations

import numpy as np
import pytest

import mri_lens as ml

from brute import TEXTS
from saes import make_sae

ray = pytest.importorskip("ray", reason="the Ray engine needs ray (pip install 'mri-lens[ray]')")

pytestmark = pytest.mark.slow


def test_ray_scan_of_sae_latents_equals_one_process(tiny, tmp_path):
    path, _, _ = make_sae(tmp_path / "sae", 128, 96, "blocks.2.hook_resid_post", arch="jumprelu")
    units = ml.units.sae({2: path})
    kw = dict(units=units, batch_size=2, progress=False, shard_tokens=40)
    one = ml.scan(tiny, TEXTS, **kw)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = ml.scan("tiny", TEXTS, engine=ml.RayEngine(workers=2), out=tmp_path / "run", **kw)
    finally:
        ray.shutdown()
    assert on_ray.meta["units"] == one.meta["units"] and on_ray.meta["n_shards"] > 1
    for p in one.poolings:
        np.testing.assert_array_equal(on_ray.pooled(p), one.pooled(p))
    np.testing.assert_array_equal(on_ray.stats.max, one.stats.max)
    np.testing.assert_array_equal(on_ray.top.docs, one.top.docs)
    np.testing.assert_allclose(on_ray.stats.mean, one.stats.mean, rtol=1e-9, atol=1e-12)
