"""The region maps' figures: region images with the log-odds panel, the scatter, small multiples, HTML repr."""

from __future__ import annotations

import numpy as np
import pytest

import mri_lens as ml


def test_figures(tiny_maps):
    m = tiny_maps
    fig = m.figure(0)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 3 and np.asarray(heat[0].z).shape == (5, 5)
    # the log-odds panel equals the definition on one region
    lo = m.log_odds(0, "code", "prose")
    act, code = m.activated(0), m.labels == 0
    r = int(np.nanargmax(np.abs(lo)))
    ka, kb = act[code, r].sum() + 0.5, act[~code, r].sum() + 0.5
    na, nb = code.sum() + 1, (~code).sum() + 1
    assert lo.ravel()[r] == pytest.approx(np.log(ka / (na - ka)) - np.log(kb / (nb - kb)))
    sc = m.scatter(0, "code")
    assert "neuron" in sc.data[0].hovertemplate and len(sc.data[0].x) == m.d_mlp_
    sm = m.small_multiples()
    assert len(sm.data) == len(m.layers)
    html = m._repr_html_()
    assert "non-empty regions" in html
    with pytest.raises(ml.ScanError, match="unknown category"):
        m.figure(0, ["code", "poetry"])
