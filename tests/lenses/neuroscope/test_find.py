"""Finding neurons from a scan alone (mri_lens.lenses.neuroscope.find_neurons): by a token or a token set, by
maximum, density and category selectivity, checked against plain loops over the scan's top examples and tokens."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.errors import ScanError


def _hits_by_loop(scan, token_ids: set[int]) -> dict[tuple[int, int], tuple[int, int, float]]:
    """``(layer, neuron) -> (matching examples, kept examples, mean value of the matching ones)``, one example at a
    time through the stored tokens (``scan.tokens(doc)[position]``)."""
    out = {}
    for li, layer in enumerate(scan.layers):
        for n in range(scan.d_mlp):
            docs, pos, vals = scan.top.docs[li, n], scan.top.positions[li, n], scan.top.values[li, n]
            hit = [float(v) for d, p, v in zip(docs, pos, vals) if d >= 0 and int(scan.tokens(int(d))[p]) in token_ids]
            out[(layer, n)] = (len(hit), int((docs >= 0).sum()), float(np.mean(hit)) if hit else float("nan"))
    return out


def test_find_except_neuron_on_the_stdlib_scan(code_scan):
    t0 = time.perf_counter()
    hits = ml.neuroscope.find(code_scan, token=" except", limit=None)
    seconds = time.perf_counter() - t0
    assert seconds < 1.0, seconds  # every neuron of the tiny LM (4 x 512), vectorised
    # the neuron the README's stdlib corpus shows: layer 1 neuron 88, most of its top examples peak on " except"
    assert (int(hits.loc[0, "layer"]), int(hits.loc[0, "neuron"])) == (1, 88)
    ex = code_scan.top_examples(1, 88)
    assert hits.loc[0, "share"] == pytest.approx(ex.max_tokens().count(" except") / len(ex))
    assert hits.loc[0, "share"] >= 0.5 and hits.loc[0, "token"] == "' except'"
    # every neuron with a matching example is listed, with the loop's counts, share and mean activation
    loop = _hits_by_loop(code_scan, {code_scan.token_id(" except")})
    want = {k: v for k, v in loop.items() if v[0] > 0}
    got = {(int(r.layer), int(r.neuron)): r for r in hits.itertuples()}
    assert set(got) == set(want)
    for key, (count, kept, mean) in want.items():
        r = got[key]
        assert r.count == count and r.share == pytest.approx(count / kept)
        assert r.mean_activation == pytest.approx(mean, rel=1e-6)
    # ranked by share, then mean activation
    keys = list(zip(-hits["share"], -hits["mean_activation"]))
    assert keys == sorted(keys)
    assert len(ml.neuroscope.find(code_scan, token=" except")) == min(50, len(want))


def test_find_a_token_set(code_scan):
    one = ml.neuroscope.find(code_scan, token=" except", limit=None)
    both = ml.neuroscope.find(code_scan, tokens=[" except", code_scan.token_id("except")], limit=None)
    loop = _hits_by_loop(code_scan, {code_scan.token_id(" except"), code_scan.token_id("except")})
    got = {(int(r.layer), int(r.neuron)): int(r.count) for r in both.itertuples()}
    assert got == {k: v[0] for k, v in loop.items() if v[0] > 0}
    assert len(both) >= len(one) and set(both.loc[0, "token"].split(", ")) == {"' except'", "'except'"}


def test_find_by_max_density_and_the_top_token(code_scan):
    by_max = ml.neuroscope.find(code_scan, limit=5)
    li, n = np.unravel_index(np.argmax(code_scan.stats.max), code_scan.stats.max.shape)
    assert (int(by_max.loc[0, "layer"]), int(by_max.loc[0, "neuron"])) == (code_scan.layers[li], n)
    assert list(by_max["max"]) == sorted(by_max["max"], reverse=True) and len(by_max) == 5
    sparse = ml.neuroscope.find(code_scan, by="density", limit=None)
    fires = code_scan.stats.max > 0
    assert len(sparse) == int(fires.sum())
    assert sparse.loc[0, "density"] == pytest.approx(float(code_scan.stats.frac_positive[fires].min()))
    assert np.all(np.diff(sparse["density"].to_numpy()) >= 0)
    # the top token of a row is the most frequent max token of that neuron's top examples
    for r in by_max.itertuples():
        toks = code_scan.top_examples(int(r.layer), int(r.neuron)).max_tokens()
        best = max(toks, key=toks.count)
        assert r.top_token == best and r.top_token_share == pytest.approx(toks.count(best) / len(toks))
    only1 = ml.neuroscope.find(code_scan, token=" except", layers=[1], limit=None)
    assert set(only1["layer"]) == {1}


def test_find_by_selectivity(tiny_scan):
    sel = ml.neuroscope.find(tiny_scan, by="selectivity", limit=None)
    assert list(sel["selectivity"]) == sorted(sel["selectivity"], reverse=True)
    assert set(sel["selective_for"]) <= set(tiny_scan.label_names)
    # Cohen's d of the named category against the rest, by hand, for the top rows
    for r in sel.head(5).itertuples():
        x = tiny_scan.pooled("mean", int(r.layer))[:, int(r.neuron)].astype(np.float64)
        inside = tiny_scan.labels == tiny_scan.label_names.index(r.selective_for)
        a, b = x[inside], x[~inside]
        sd = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(x) - 2))
        assert r.selectivity == pytest.approx((a.mean() - b.mean()) / sd, rel=1e-6)
        assert r.selectivity > 0
    with pytest.raises(ScanError, match="labelled scan"):
        ml.neuroscope.find(dataclasses.replace(tiny_scan, labels=None, label_names=None), by="selectivity")


def test_find_errors(code_scan):
    with pytest.raises(ScanError, match=r"' exceptional' is \d tokens .*not one"):
        ml.neuroscope.find(code_scan, token=" exceptional")
    with pytest.raises(ValueError, match="by must be one of"):
        ml.neuroscope.find(code_scan, by="sparsity")
    with pytest.raises(ValueError, match="give token= or tokens="):
        ml.neuroscope.find(code_scan, by="share")
    with pytest.raises(ValueError, match="not both"):
        ml.neuroscope.find(code_scan, token=" except", tokens=[" try"])
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        ml.neuroscope.find(code_scan, token=" except", limit=0)
    with pytest.raises(ScanError, match="layer 9 was not scanned"):
        ml.neuroscope.find(code_scan, token=" except", layers=[9])
