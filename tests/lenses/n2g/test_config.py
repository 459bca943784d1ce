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
    assert N2GConfig().end_values == "firing"              # the paper's END values by default
    with pytest.raises(ValueError, match="end_values"):
        N2GConfig(end_values="max")
    assert N2GConfig().augment_pivots == "main"          # the paper's augmentation by default
    with pytest.raises(ValueError, match="augment_pivots"):
        N2GConfig(augment_pivots="some")
    with pytest.raises(ValueError, match="augment_repeats"):
        N2GConfig(augment_repeats=0)
