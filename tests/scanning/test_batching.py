"""Batch planning shared by the scan and N2G."""

from __future__ import annotations

import numpy as np
import pytest

from mri_lens.scanning.batching import plan_batches


@pytest.mark.parametrize("max_padding", [None, 0.25])
def test_every_sequence_once_within_budgets(max_padding):
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=500)
    plan = plan_batches(lengths, 64, 1024, max_padding=max_padding)
    assert np.array_equal(np.sort(np.concatenate(plan)), np.arange(500))
    for b in plan:
        width = lengths[b].max()
        assert len(b) <= 64 and (len(b) * width <= 1024 or len(b) == 1)
        assert width == lengths[b[0]]  # longest first within (and across) batches
        if max_padding is not None and len(b) > 16:
            assert len(b) * width <= 1.25 * lengths[b].sum()


def test_padding_cap_only_splits_mixed_batches():
    same = np.full(100, 10)
    assert [len(b) for b in plan_batches(same, 100, None, max_padding=0.25)] == [100]
    mixed = np.array([40] * 20 + [4] * 80)
    plan = plan_batches(mixed, 100, None, max_padding=0.25)
    assert len(plan) > 1 and len(plan_batches(mixed, 100, None)) == 1
