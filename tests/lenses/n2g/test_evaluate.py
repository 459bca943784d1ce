"""N2G scoring (mri_lens.lenses.n2g.evaluate): precision / recall / F1 and the lookup baselines."""

from __future__ import annotations

import numpy as np

from mri_lens.lenses.n2g.evaluate import NgramLookup, TokenLookup, prf


def test_metrics_and_baselines():
    s = prf(np.array([1.0, 0.9, 0.0, 0.0]), np.array([1.0, 0.0, 0.7, 0.0]))
    assert s["firing_precision"] == 0.5 and s["firing_recall"] == 0.5 and s["firing_f1"] == 0.5
    assert s["nonfiring_precision"] == 0.5 and s["nonfiring_recall"] == 0.5
    none = prf(np.zeros(3), np.zeros(3))
    assert none["firing_recall"] is None and none["firing_f1"] is None and none["nonfiring_f1"] == 1.0
    tl = TokenLookup().fit([[1, 2, 1]], [np.array([1.0, 0.0, 0.5])])
    assert tl.predict(np.array([1, 2, 3])).tolist() == [0.75, 0.0, 0.0]
    ng = NgramLookup(2).fit([[1, 2, 1]], [np.array([1.0, 0.0, 0.5])])
    assert ng.predict(np.array([2, 1, 1]), np.zeros(3, np.int64)).tolist() == [0.0, 0.5, 0.0]
