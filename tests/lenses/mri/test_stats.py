"""The vectorised Fisher exact tests (one-sided upper tail, two-sided) against scipy, edge cases and corpus scale."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mri_lens.lenses.mri import _stats as mg


def test_two_sided_fisher_edge_cases():
    na, nb = 7, 5
    ka = np.array([0, 7, 0, 3, 7, 0, 2])
    kb = np.array([0, 5, 5, 2, 0, 1, 4])
    p = mg._fisher_two_sided(ka, ka + kb, na, nb)
    for i in range(len(ka)):
        ref = stats.fisher_exact([[ka[i], na - ka[i]], [kb[i], nb - kb[i]]]).pvalue
        assert p[i] == pytest.approx(ref, rel=1e-12)


def test_fisher_helpers_at_corpus_scale():
    # Log-gamma pmf: agrees with scipy's exact (slow) fisher_exact at thousands of documents, tails included.
    rng = np.random.default_rng(0)
    n, n_c = 5000, 1800
    k_total = rng.integers(0, 2500, 40)
    k = np.array([rng.integers(max(0, t - (n - n_c)), min(n_c, t) + 1) for t in k_total])
    k[:5] = np.minimum(k_total[:5], n_c)  # extreme upper tails
    p = mg._upper_tail(k, n, n_c, k_total)
    for i in range(len(k)):
        table = [[k[i], n_c - k[i]], [k_total[i] - k[i], n - n_c - k_total[i] + k[i]]]
        assert p[i] == pytest.approx(stats.fisher_exact(table, alternative="greater").pvalue, rel=1e-9)
    p2 = mg._fisher_two_sided(k, k_total, n_c, n - n_c)
    for i in range(len(k)):
        table = [[k[i], n_c - k[i]], [k_total[i] - k[i], n - n_c - k_total[i] + k[i]]]
        assert p2[i] == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9)
