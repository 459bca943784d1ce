"""NeuronGraph (mri_lens.lenses.n2g.neuron_graph): files, then fitting on the real tiny LM."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.model import token_activations
from mri_lens.errors import ModelAdapterError, ScanFileError
from mri_lens.lenses.n2g.config import N2GConfig
from mri_lens.lenses.n2g.neuron_graph import NeuronGraph

from .builders import _synthetic_graph, _token_selective_neuron


def test_graph_file_errors(tmp_path):
    g = _synthetic_graph({5: "a", 6: "b"})
    p = g.save(tmp_path / "g.json")
    g2 = NeuronGraph.load(p)
    assert g2.to_json() == g.to_json()
    (tmp_path / "bad.json").write_text(open(p).read()[:50])
    with pytest.raises(ScanFileError, match="corrupted"):
        NeuronGraph.load(tmp_path / "bad.json")
    (tmp_path / "foreign.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ScanFileError, match="not a saved N2G"):
        NeuronGraph.load(tmp_path / "foreign.json")
    with pytest.raises(ScanFileError, match="does not exist"):
        NeuronGraph.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="tokenizer"):
        g2.predict("text")


def test_fit_predicts_firing_on_held_out_text(tiny, code_scan):
    count, n, tok = _token_selective_neuron(code_scan)
    assert count >= 15
    ex = code_scan.top_examples(0, n, 20)
    g = NeuronGraph.fit(tiny, 0, n, ex, seed=0, config=N2GConfig.paper())
    assert len(g.examples["train"]) == 10 and len(g.examples["test"]) == 10
    assert g.meta["mask_token_str"] == "<|endoftext|>"     # GPT-2 style: pad = BOS = EOS
    assert g.meta["cost"]["forward_calls"] <= 10           # pooled stages, not one forward per prompt
    assert any(t == tok for t in g.activating_tokens())
    s = ml.n2g.evaluate(g, tiny, random=[code_scan.tokens(d)[1:200].tolist() for d in range(100, 110)])
    ev = g.meta["evaluation"]
    assert ev["n_firing_test_tokens"] > 0 and not ev["no_firing_test_token"] and ev["winner"] in s
    assert s["n2g"]["firing_recall"] > 0.3 and s["n2g"]["firing_precision"] > 0.3
    assert s["n2g"]["nonfiring_f1"] > 0.9 and s["n2g"]["correlation"] > 0.3
    assert set(s) == {"n2g", "token", "ngram"}                # {explainer: {score: value}}, plain JSON
    assert all(isinstance(v, float) or v is None for sc in s.values() for v in sc.values())
    assert 0 <= s["n2g"]["detection_auc"] <= 1 and s["n2g"]["loses_to_token_lookup"] in (0.0, 1.0)
    # the same prediction from text and from ids; a held-out text fires where the neuron really fires
    text = tiny.tokenizer.decode(g.examples["test"][0])
    assert np.array_equal(g.predict(text), g.predict(tiny.tokenizer(text, add_special_tokens=False)["input_ids"]))
    true = token_activations(tiny, [[0] + g.examples["test"][0]], [0])[0][0][1:, n] / g.max_activation
    pred = g.predict(g.examples["test"][0])
    assert np.any((true >= 0.5) & (pred >= 0.5))


def test_fit_calibrated_end_values(tiny, code_scan):
    _, n, _ = _token_selective_neuron(code_scan)
    ex = code_scan.top_examples(0, n, 20)
    g = NeuronGraph.fit(tiny, 0, n, ex, seed=0, config=N2GConfig(end_values="calibrated"))
    assert g.meta["fit"]["calibrated_ends"] > 0
    # every END value reached in the training texts is the mean true activation where it is the longest match
    train = [list(t) for t in g.examples["train"]]
    acts = [a[1:, n] / g.max_activation for a in (token_activations(tiny, [[0] + t], [0])[0][0] for t in train)]
    lens = [len(t) for t in train]
    vals, nodes = g.trie.match(np.concatenate(train), np.repeat(np.cumsum([0] + lens[:-1]), lens))
    true = np.concatenate(acts)
    for u in np.unique(nodes[nodes >= 0])[:20]:
        assert g.trie.end_value(int(u)) == pytest.approx(float(true[nodes == u].mean()), abs=1e-4)


def test_json_round_trip_and_same_seed_same_trie(tiny, code_scan, tmp_path):
    _, n, _ = _token_selective_neuron(code_scan)
    ex = code_scan.top_examples(0, n, 20)
    g1 = NeuronGraph.fit(tiny, 0, n, ex, seed=3)
    g2 = NeuronGraph.fit(tiny, 0, n, ex, seed=3)
    assert g1.to_json() == g2.to_json()
    g3 = NeuronGraph.fit(tiny, 0, n, ex, seed=4)
    assert g3.examples["test"] != g1.examples["test"]          # the seed drives the split
    loaded = NeuronGraph.load(g1.save(tmp_path / "g.json"), tiny)
    texts = [code_scan.tokens(d)[1:].tolist() for d in range(5)] + ["for i in range(10):\n    pass"]
    for a, b in zip(g1.predict_many(texts), loaded.predict_many(texts)):
        assert np.array_equal(a, b)
    assert loaded.to_json() == g1.to_json()
    assert "NeuronGraph(layer=0" in repr(loaded)


def test_bad_input_errors(tiny, code_scan, minilm):
    ex = code_scan.top_examples(0, 1, 20)
    with pytest.raises(ValueError, match="empty"):
        NeuronGraph.fit(tiny, 0, 1, [])
    with pytest.raises(ValueError, match="neuron must be"):
        NeuronGraph.fit(tiny, 0, 100000, ex)
    with pytest.raises(ModelAdapterError, match="layer must be"):
        NeuronGraph.fit(tiny, 9, 1, ex)
    with pytest.raises(ModelAdapterError, match="causal"):
        NeuronGraph.fit(minilm, 0, 1, ["a sentence"])
    with pytest.raises(ValueError, match="neurons"):
        ml.n2g.explain_layer(tiny, code_scan, 0, [-1])
