"""Fixtures of the MRI lens tests: region maps fitted once per session on the shared tiny-LM scans, and a planted
code-vs-prose structure large enough for the enrichment statistics."""

from __future__ import annotations

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.lenses.mri.regions import RegionMaps


@pytest.fixture(scope="session")
def tiny_maps(tiny_scan):
    return RegionMaps.fit(tiny_scan, grid=5, seed=0, n_jobs=1, progress=False)


# Documents per category of the planted structure. The z-score rule lets about one document in six activate a
# region, and enrichment is tested over every region of every layer (about 80 here: 4 layers, 5 x 5 grid, BH's first
# cut 0.05 / 80 = 6.3e-4). With 16 documents per category a region that 5 documents of one category and none of the
# other activate has Fisher's two-sided p = 0.043, and even 9 of 9 only p = 8.2e-4: a test passed only when several
# unusually skewed regions came together, which a different seed or UMAP version undid. With 32 per category a
# region's usual 10 or 11 activating documents, all of one category, give p = 8.5e-4 or 3.5e-4, region after region.
PLANTED_PER_CATEGORY = 32


@pytest.fixture(scope="session")
def planted_scan(tiny):
    """Code against prose on the tiny LM: the first 32 function definitions of standard-library modules and the
    first 32 drug reviews, 300 characters each, labelled ``code`` and ``prose``."""
    from corpora import code_snippets

    n = PLANTED_PER_CATEGORY
    code = code_snippets(n, chars=300)
    prose = [t[:300] for t in ml.datasets.drug_reviews(split="train").texts[:n]]
    assert len(code) == len(prose) == n
    return ml.scan(tiny, ml.Corpus(code + prose, ["code"] * n + ["prose"] * n), pooling=("mean",), progress=False)


@pytest.fixture(scope="session")
def planted_maps(planted_scan):
    return RegionMaps.fit(planted_scan, grid=5, seed=0, n_jobs=1, progress=False)


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
