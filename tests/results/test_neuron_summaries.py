"""Per-neuron summaries of a scan (mri_lens.results.stats, Scan.neuron_table): the token at each top example's max,
each neuron's most frequent one, category selectivity; and the notebook view of top examples."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from mri_lens.errors import ScanError
from mri_lens.results.stats import category_selectivity, token_mode


def test_max_token_ids_are_the_tokens_at_the_max_positions(tiny_scan):
    ids = tiny_scan.max_token_ids()
    assert ids.shape == tiny_scan.top.docs.shape and ids.dtype == np.int64
    for li, layer in enumerate(tiny_scan.layers):
        for n in (0, 7, tiny_scan.d_mlp - 1):
            ex = tiny_scan.top_examples(layer, n)
            want = [int(t[p]) for t, p in zip(ex.tokens, ex.positions)]
            assert ids[li, n, :len(ex)].tolist() == want
            assert np.all(ids[li, n, len(ex):] == -1)
            assert tiny_scan.token_strings(want) == ex.max_tokens()  # ASCII code and prose: the same display
    assert np.array_equal(tiny_scan.max_token_ids(1), ids[tiny_scan.layer_index(1)])
    bottom = tiny_scan.max_token_ids(0, which="bottom")
    ex = tiny_scan.top_examples(0, 3, which="bottom")
    assert bottom[3, :len(ex)].tolist() == [int(t[p]) for t, p in zip(ex.tokens, ex.positions)]


def test_token_mode_counts_and_ties():
    ids = np.array([[5, 3, 5, 3, -1], [2, 2, 9, 9, 9], [-1, -1, -1, -1, -1], [4, 1, 1, 4, 7]])
    mode, count = token_mode(ids)
    # a tie goes to the id seen first (the better ranked example)
    assert mode.tolist() == [5, 9, -1, 4] and count.tolist() == [2, 3, 0, 2]
    assert token_mode(ids[None])[0].tolist() == [[5, 9, -1, 4]]  # any leading shape


def test_category_selectivity_is_cohens_d_against_the_rest():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [8, 6, 3])
    x = rng.normal(size=(len(labels), 5)) + 100.0  # a large mean: the centred sums keep their precision
    x[labels == 1, 2] += 3.0
    x[:, 4] = 100.0  # a constant neuron has no selectivity
    d = category_selectivity(x, labels, 3, min_docs=5)
    assert d.shape == (3, 5)
    for c in (0, 1):
        for j in range(4):
            a, b = x[labels == c, j], x[labels != c, j]
            sd = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(x) - 2))
            assert d[c, j] == pytest.approx((a.mean() - b.mean()) / sd, rel=1e-9)
    assert np.all(np.isnan(d[2]))  # 3 documents < min_docs
    assert np.all(np.isnan(d[:, 4]))
    assert int(np.nanargmax(d[:, 2])) == 1


def test_neuron_table_columns(tiny_scan):
    t = tiny_scan.neuron_table(1)
    assert len(t) == tiny_scan.d_mlp
    assert {"top_token", "top_token_share", "density", "selectivity", "selective_for"} <= set(t.columns)
    li = tiny_scan.layer_index(1)
    np.testing.assert_array_equal(t["density"], tiny_scan.stats.frac_positive[li])
    for n in (0, 5, 300):
        toks = tiny_scan.top_examples(1, n).max_tokens()
        best = max(toks, key=toks.count)
        assert t.loc[n, "top_token"] == best and t.loc[n, "top_token_share"] == pytest.approx(toks.count(best) / len(toks))
    sel, cat = tiny_scan.selectivity(1)
    np.testing.assert_array_equal(t["selectivity"], sel)
    assert list(t["selective_for"]) == [tiny_scan.label_names[c] if c >= 0 else None for c in cat]
    x = tiny_scan.pooled("mean", 1).astype(np.float64)
    d = category_selectivity(x, tiny_scan.labels, len(tiny_scan.label_names))
    np.testing.assert_allclose(sel, np.nanmax(d, 0))
    unlabelled = dataclasses.replace(tiny_scan, labels=None, label_names=None)
    u = unlabelled.neuron_table(1)
    assert u["selectivity"].isna().all() and u["selective_for"].isna().all()
    with pytest.raises(ScanError, match="labelled scan"):
        unlabelled.selectivity(1)


def test_token_id_errors(tiny_scan):
    assert tiny_scan.token_id(" def") == tiny_scan.token_id(tiny_scan.token_id(" def"))
    with pytest.raises(ScanError, match="not one"):
        tiny_scan.token_id(" definitely not one token")
    with pytest.raises(ScanError, match="a token id is >= 0"):
        tiny_scan.token_id(-3)
    with pytest.raises(ScanError, match="no tokenizer"):
        dataclasses.replace(tiny_scan, tokenizer_json=None).token_id(" def")


def test_top_examples_html_shows_code_in_monospace_left_aligned(tiny_scan):
    page = tiny_scan.top_examples(0, 3, k=3)._repr_html_()
    cells = re.findall(r"<td style='([^']*)'>", page)
    assert len(cells) == 3
    assert all("monospace" in c and "text-align:left" in c and "white-space:pre-wrap" in c for c in cells)
