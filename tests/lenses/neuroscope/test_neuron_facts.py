"""Neuron facts for the neuron pages, each against a brute-force numpy / torch oracle on the real tiny LM and its scan
(and MiniLM-L6 where an encoder differs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.lenses.neuroscope import neuron_facts as nf

LAYER = 1


def _oracle_top(m: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the k largest finite entries, ties by the smaller column id, padded with -1 / NaN (plain loops)."""
    ids = np.full((len(m), k), -1, dtype=np.int64)
    vals = np.full((len(m), k), np.nan)
    for r, row in enumerate(m):
        cols = sorted((j for j in range(len(row)) if np.isfinite(row[j])), key=lambda j: (-row[j], j))[:k]
        ids[r, :len(cols)] = cols
        vals[r, :len(cols)] = row[cols]
    return ids, vals


def _assert_neighbours(idx, vals, full: np.ndarray, oracle_vals: np.ndarray, atol: float) -> None:
    """The lists hold the oracle's values in order, and each listed neighbour has that value in ``full``."""
    np.testing.assert_allclose(vals, oracle_vals, atol=atol)
    rows = np.arange(len(idx))[:, None]
    ok = idx >= 0
    np.testing.assert_allclose(np.where(ok, full[rows, np.where(ok, idx, 0)], np.nan), vals, atol=atol)
    assert not (idx == rows).any()  # never itself


def test_top_k_rows_equals_a_sort(tiny):
    rng = np.random.default_rng(0)
    for trial in range(60):
        x = rng.integers(0, 4, size=(6, 11)).astype(np.float64) if trial % 2 else rng.standard_normal((6, 11))
        x[rng.random(x.shape) < 0.25] = np.nan
        x[rng.random(x.shape) < 0.1] = -np.inf
        k = int(rng.integers(1, 14))
        ids, vals = nf._top_k_rows(x, k)
        want_ids, want_vals = _oracle_top(x, k)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(vals, want_vals.astype(np.float32))


def test_similar_by_weights_is_the_cosine_of_output_rows(tiny, minilm, monkeypatch):
    w = tiny.W_out[LAYER].detach().double().numpy()  # [512, d_model]
    unit = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, np.nan)
    idx, vals = nf.similar_by_weights(tiny, LAYER, k=6)
    assert idx.shape == vals.shape == (512, 6) and idx.dtype == np.int64 and vals.dtype == np.float32
    want_ids, want_vals = _oracle_top(cos, 6)
    _assert_neighbours(idx, vals, cos, want_vals, 1e-5)
    assert (idx == want_ids).mean() > 0.99  # the same neighbours (float32 may swap a near-tie)
    monkeypatch.setattr(nf, "_CHUNK", 100)  # blocks that do not divide 512: the same lists
    again = nf.similar_by_weights(tiny, LAYER, k=6)
    np.testing.assert_array_equal(again[0], idx)
    enc = nf.similar_by_weights(minilm, LAYER, k=3)
    assert enc[0].shape == (1536, 3) and np.all(enc[0] >= 0)


def test_similar_by_activation_is_pearson_of_pooled_values(tiny_scan):
    x = tiny_scan.pooled("max", LAYER).astype(np.float64)
    r = np.corrcoef(x.T)
    np.fill_diagonal(r, np.nan)
    idx, vals = nf.similar_by_activation(tiny_scan, LAYER, k=5)  # "max" by default
    want_ids, want_vals = _oracle_top(r, 5)
    assert idx.shape == (tiny_scan.d_mlp, 5)
    _assert_neighbours(idx, vals, r, want_vals, 1e-5)
    assert (idx == want_ids).mean() > 0.99
    mean = nf.similar_by_activation(tiny_scan, LAYER, k=5, pooling="mean")
    assert not np.array_equal(mean[0], idx)
    with pytest.raises(ml.ScanError, match="not kept"):
        nf.similar_by_activation(tiny_scan, LAYER, pooling="median")


def test_constant_neurons_have_no_neighbours_and_ties_go_to_the_smaller_id(tiny_scan):
    x = np.array(tiny_scan.pooled("max", LAYER), dtype=np.float32)
    x[:, 5] = 0.25  # constant: no correlation with anything
    x[:, 40] = x[:, 9]  # 9 and 40 correlate equally with everything else
    one = dataclasses.replace(tiny_scan, layers=[LAYER], pooled_={"max": x[:, None, :]})  # [n_docs, 1, d_mlp]
    idx, vals = nf.similar_by_activation(one, LAYER, k=4)
    assert (idx[5] == -1).all() and np.isnan(vals[5]).all()
    assert not (idx == 5).any()
    assert idx[9, 0] == 40 and idx[40, 0] == 9 and vals[9, 0] == pytest.approx(1.0)
    for n in range(x.shape[1]):
        row = idx[n].tolist()
        if 9 in row and 40 in row:
            assert row.index(9) == row.index(40) - 1  # equal r: the smaller id first
    assert nf.similar_by_activation(dataclasses.replace(one, pooled_={}), LAYER) is None


def test_category_means(tiny_scan):
    names, means, counts = nf.category_means(tiny_scan, LAYER)
    x = tiny_scan.pooled("max", LAYER).astype(np.float64)
    assert names == tiny_scan.label_names and counts.tolist() == [16, 16]
    for c in range(len(names)):
        np.testing.assert_allclose(means[c], x[tiny_scan.labels == c].mean(0), atol=1e-6)
    assert means.shape == (2, tiny_scan.d_mlp) and means.dtype == np.float32
    labels = np.array(tiny_scan.labels)
    labels[0] = -1  # a document without a label is skipped
    _, means2, counts2 = nf.category_means(dataclasses.replace(tiny_scan, labels=labels), LAYER, pooling="mean")
    c0 = int(tiny_scan.labels[0])
    assert counts2[c0] == counts[c0] - 1
    mean = tiny_scan.pooled("mean", LAYER).astype(np.float64)
    np.testing.assert_allclose(means2[c0], mean[labels == c0].mean(0), atol=1e-6)
    assert nf.category_means(dataclasses.replace(tiny_scan, labels=None, label_names=None), LAYER) is None


def _brute_mask(model) -> np.ndarray:
    tok = model.tokenizer
    return np.array([tok.encode(tok.decode([i]), add_special_tokens=False) == [i] for i in range(len(tok))])


def test_emitted_mask_drops_tokens_no_text_produces(tiny, tiny_scan, minilm):
    tok = tiny.tokenizer
    mask = nf.emitted_token_mask(tiny)
    brute = _brute_mask(tiny)
    assert mask.shape == (tiny.W_U.shape[1],)
    control = np.array([all(not c.isspace() and ord(c) < 32 or 127 <= ord(c) < 160 for c in tok.decode([i]))
                        for i in range(len(tok))])
    np.testing.assert_array_equal(mask, brute & ~control & (np.arange(len(tok)) != tok.bos_token_id))
    byte_tokens = [i for i in range(len(tok)) if tok.decode([i]) == "\ufffd"]
    assert len(byte_tokens) == 128 and not mask[byte_tokens].any()
    assert mask[tok.encode(" except", add_special_tokens=False)].all()
    assert mask[tok.encode("\t", add_special_tokens=False)].all()  # whitespace is no control token
    assert not mask[tok.bos_token_id]
    assert nf.emitted_token_mask(tiny, controls=True)[control & brute].all()
    # a token a scan saw counts even when it does not survive decoding alone (a split character's bytes)
    seen = ml.scan(tiny, ["caf\u00e9 \u2615 \u0645\u0631\u062d\u0628\u0627"], top_k=1, progress=False)
    split = [i for i in set(seen.token_ids.tolist()) if not brute[i]]
    assert split and nf.emitted_token_mask(tiny, seen)[split].all()
    assert not nf.emitted_token_mask(tiny, seen)[tok.bos_token_id]  # specials stay out, seen or not
    assert nf.emitted_token_mask(tiny, tiny_scan).sum() >= mask.sum()
    mt = minilm.tokenizer
    mt(["a"], padding="max_length", max_length=16, truncation=True)  # leaves its backend padding every encoding
    enc = nf.emitted_token_mask(minilm)
    assert enc.shape == (len(mt),) and enc[mt.convert_tokens_to_ids("hello")]
    assert not enc[[mt.cls_token_id, mt.sep_token_id, mt.pad_token_id]].any()


def test_logit_effects_are_w_out_times_w_u_over_the_mask(tiny, tiny_scan, minilm):
    mask = nf.emitted_token_mask(tiny, tiny_scan)
    (top, top_v, bot, bot_v), why = nf.logit_effects(tiny, 3, mask=mask)
    assert why == "" and top.shape == top_v.shape == (512, 10) and bot.shape == (512, 5)
    full = (tiny.W_out[3].detach().double() @ tiny.W_U.detach().double()).numpy()  # [512, d_vocab]
    full[:, ~mask] = np.nan
    want, want_v = _oracle_top(full, 10)
    np.testing.assert_array_equal(top, want)
    np.testing.assert_allclose(top_v, want_v, atol=1e-5)
    want, want_v = _oracle_top(-full, 5)
    np.testing.assert_array_equal(bot, want)
    np.testing.assert_allclose(bot_v, -want_v, atol=1e-5)
    # layer 3 neuron 468: unmasked, most of its top ten are tokens no text produces; masked, none is
    (raw, _, _, _), _ = nf.logit_effects(tiny, 3)
    assert (~mask[raw[468]]).sum() >= 6 and mask[top[468]].all()
    shown = ml.model.as_adapter(tiny).str_tokens(top[468].tolist(), sequence=False)
    assert not any(s.startswith("<0x") for s in shown)
    assert nf.logit_effects(minilm, LAYER) == (None, "an encoder has no unembedding to the vocabulary here")
    with pytest.raises(ValueError, match="mask must be"):
        nf.logit_effects(tiny, 3, mask=mask[:10])


def test_example_attribution_equals_attribution_on_each_neurons_documents(tiny, tiny_scan, minilm):
    docs = {n: tiny_scan.top_examples(LAYER, n, k=3).docs.tolist() for n in (88, 5, 300)}
    docs[5] = docs[5] + [0]  # overlapping document sets
    est = nf.example_attribution(tiny, tiny_scan, LAYER, docs, batch_size=4)
    assert est.shape == (512,) and est.dtype == np.float32
    for n, ds in docs.items():
        one = ml.effects.attribution(tiny, LAYER, scan=tiny_scan, docs=ds, progress=False)
        assert est[n] == pytest.approx(one.scores[n], abs=1e-5)
    assert np.isnan(np.delete(est, list(docs))).all()
    assert np.isnan(nf.example_attribution(minilm, ml.scan(minilm, ["a b c"], top_k=1, progress=False), LAYER,
                                           {1: [0]})).all()


@pytest.mark.parametrize("per_pass", [None, 1])
def test_example_attribution_of_several_layers_equals_each_layer_alone(tiny, tiny_scan, per_pass):
    docs = {l: {n: tiny_scan.top_examples(l, n, k=3).docs.tolist() for n in (88, 5, 300 + l)} for l in (0, 2, 3)}
    docs[2][7] = [0, 1]  # a document no other layer uses
    docs[3] = {}  # a layer with nothing to measure
    got = nf.example_attribution_by_layer(tiny, tiny_scan, docs, batch_size=4, layers_per_pass=per_pass)
    assert sorted(got) == [0, 2, 3]
    for l in (0, 2):
        alone = nf.example_attribution(tiny, tiny_scan, l, docs[l], batch_size=4)
        np.testing.assert_allclose(got[l], alone, rtol=0, atol=1e-6)
        assert np.isfinite(got[l][list(docs[l])]).all()
    assert np.isnan(got[3]).all() and got[3].shape == (512,)
    assert not np.allclose(got[0][[88, 5]], got[2][[88, 5]])
    with pytest.raises(ml.ScanError, match="neurons must be in"):
        nf.example_attribution_by_layer(tiny, tiny_scan, {0: {512: [0]}})


def test_example_attribution_ranks_an_important_neuron_as_exact_ablation_does(tiny, tiny_scan):
    docs = {n: tiny_scan.top_examples(LAYER, n, k=5).docs.tolist() for n in range(512)}
    est = nf.example_attribution(tiny, tiny_scan, LAYER, docs)
    first, second, third = (int(n) for n in np.argsort(-est)[:3])
    exact = {n: ml.effects.neuron_effects(tiny, tiny_scan, LAYER, n, k=5, n_random=1, progress=False).top.loss_change
             for n in (first, second, third)}
    assert exact[first] > 0 and est[first] > 0  # ablating it hurts on its own examples, both say so
    assert exact[first] > max(exact[second], exact[third])
    assert exact[first] == pytest.approx(float(est[first]), rel=0.5)
