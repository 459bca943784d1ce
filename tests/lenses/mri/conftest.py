"""Fixtures of the MRI lens tests: region maps fitted once per session on the shared tiny-LM scans."""

from __future__ import annotations

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.lenses.mri.regions import RegionMaps


@pytest.fixture(scope="session")
def tiny_maps(tiny_scan):
    return RegionMaps.fit(tiny_scan, grid=5, seed=0, n_jobs=1)


@pytest.fixture(scope="session")
def five_scan(tiny):
    """Drug reviews by condition on the tiny LM: five categories."""
    c = ml.datasets.drug_reviews(label="condition", min_count=12)
    counts = c.label_counts()
    names = sorted(counts, key=lambda n: -counts[n])[:5]
    c = c.where(names)
    keep = np.concatenate([np.flatnonzero(c.labels == k)[:24] for k in range(5)])
    c = c.subset(np.sort(keep))
    return ml.scan(tiny, c, pooling=("mean",), overflow="windows", progress=False)
