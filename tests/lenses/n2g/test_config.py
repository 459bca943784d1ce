"""N2G settings (mri_lens.lenses.n2g.config): validation, defaults, round trip."""

from __future__ import annotations

import pytest

from mri_lens.lenses.n2g.config import N2GConfig


def test_config_validation_and_round_trip():
    cfg = N2GConfig(importance_threshold=0.6, mask_token=3)
    assert N2GConfig.from_dict(cfg.to_dict()) == cfg
    assert N2GConfig().activation_threshold == 0.5 and N2GConfig().importance_threshold == 0.75
    with pytest.raises(ValueError, match="importance_threshold"):
        N2GConfig(importance_threshold=1.5)
    with pytest.raises(ValueError, match="prune_step"):
        N2GConfig(prune_step=0)
    with pytest.raises(ValueError, match="train_proportion"):
        N2GConfig(train_proportion=1.0)
    with pytest.raises(ValueError, match="unknown"):
        N2GConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="end_values"):
        N2GConfig(end_values="max")
    with pytest.raises(ValueError, match="augment_pivots"):
        N2GConfig(augment_pivots="some")
    with pytest.raises(ValueError, match="augment_repeats"):
        N2GConfig(augment_repeats=0)
    with pytest.raises(ValueError, match="fallback"):
        N2GConfig(fallback="zero")
    with pytest.raises(ValueError, match="augmenter"):
        N2GConfig(augmenter="bert")


def test_default_is_the_measured_best_and_paper_is_the_paper():
    best, paper = N2GConfig(), N2GConfig.paper()
    assert (best.pivots_per_example, best.end_values, best.augment_pivots, best.n_substitutes, best.augmenter,
            best.fallback) == (20, "calibrated", "main", 10, "probe", "token")
    assert (paper.pivots_per_example, paper.end_values, paper.augment_pivots, paper.n_substitutes,
            paper.augmenter, paper.fallback, paper.share_prefixes) == (1, "firing", "main", 5, "embedding", "none",
                                                                       False)
    # the thresholds are the paper's in both
    for c in (best, paper):
        assert (c.activation_threshold, c.importance_threshold, c.augment_threshold, c.prune_keep) == \
            (0.5, 0.75, 0.8, 0.5)
    assert N2GConfig.paper(fallback="token").fallback == "token"
    # a paper config is written without the fields added later, so it reads back (and writes) as older files
    d = paper.to_dict()
    assert "augmenter" not in d and "fallback" not in d and "share_prefixes" not in d
    assert N2GConfig.from_dict(d) == paper
    assert N2GConfig.from_dict(best.to_dict()) == best
