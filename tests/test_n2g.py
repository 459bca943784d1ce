"""N2G lens: hand-built tries and synthetic activations (no model), then the real tiny LM."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.errors import ModelAdapterError, ScanFileError
from mri_lens.n2g import IGNORE, N2GConfig, NeuronGraph, NeuronIndex, Trie
from mri_lens.n2g.augment import Augmenter, NoAugmentation, TokenProbe
from mri_lens.n2g.evaluate import NgramLookup, TokenLookup, prf
from mri_lens.n2g.fit import Forward, Prompt, fit_tries
from mri_lens.n2g.trie import importance_matrix, paths_from_prompt


# ---------------------------------------------------------------------- unit: formula, paths, trie
def test_importance_matches_formula():
    base = np.array([1.0, 2.0, 0.0, 4.0])
    masked = np.array([[0.5, 2.0, 0.0, 1.0],      # token 0 masked
                       [1.0, 0.0, 0.3, 5.0],      # token 1 masked: a_3 rises -> importance 0 (clipped)
                       [1.0, 2.0, 0.0, -1.0]])    # token 2 masked: a_3 negative -> importance 1 (clipped)
    imp = importance_matrix(base, masked, [0, 1, 3])
    assert imp[0, 0] == pytest.approx(1 - 0.5 / 1.0)
    assert imp[0, 3] == pytest.approx(1 - 1.0 / 4.0)
    assert imp[1, 1] == pytest.approx(1.0) and imp[1, 3] == 0.0
    assert imp[3, 3] == 1.0
    assert np.isnan(imp[2]).all()          # row 2 never masked
    assert np.isnan(imp[:, 2]).all()       # a_2 = 0: ratio undefined


def test_paths_ignore_and_stop_at_furthest_important_token():
    ids = [10, 11, 12, 13, 14]
    acts = np.array([0.1, 0.2, 0.3, 0.1, 0.9])
    imp = np.zeros((5, 5))
    imp[1, 4] = 0.9   # important, 3 back
    imp[3, 4] = 0.8   # important, 1 back
    imp[0, 4] = 0.5   # below the threshold: the path stops at token 1
    paths = paths_from_prompt(ids, acts, imp, 0.5, 0.75)
    assert len(paths) == 1
    labels, weights, act = paths[0]
    assert labels == [14, 13, IGNORE, 11] and act == 0.9
    assert weights == pytest.approx([0.9, 0.8, 0.0, 0.9])
    # no important context: a one-token path
    assert paths_from_prompt(ids, acts, np.zeros((5, 5)), 0.5, 0.75)[0][0] == [14]


def _trie(*paths):
    t = Trie()
    for labels, act in paths:
        t.add_path(labels, [act] + [1.0] * (len(labels) - 1), act)
    return t.finalize()


def test_trie_exact_on_training_paths_and_zero_off_them():
    t = _trie(([5, 4], 0.8), ([7], 0.6), ([9, IGNORE, 3], 0.9))
    pred = t.predict(np.array([4, 5, 1, 7, 3, 2, 9, 5, 5]))
    assert pred.tolist() == [0.0, 0.8, 0.0, 0.6, 0.0, 0.0, 0.9, 0.0, 0.0]
    # the firing token alone is not enough when its path needs context
    assert t.predict(np.array([1, 5])).tolist() == [0.0, 0.0]
    # paths never reach across a text start
    assert t.predict(np.array([4, 5]), starts=np.array([0, 1])).tolist() == [0.0, 0.0]


def test_ignore_matches_any_token_and_longest_match_wins():
    t = _trie(([9, IGNORE, 3], 0.9), ([9], 0.55), ([9, 2], 0.7))
    for mid in (0, 1, 2, 100):
        ids = np.array([3, mid, 9])
        assert t.predict(ids)[2] == pytest.approx(0.9)      # the 3-token path beats [9, 2] and [9]
    assert t.predict(np.array([1, 2, 9]))[2] == pytest.approx(0.7)
    assert t.predict(np.array([1, 1, 9]))[2] == pytest.approx(0.55)


def test_merge_ignorable_sibling_and_mean_end_value():
    t = Trie()
    t.add_path([9, 4, 3], [0.9, 0.2, 1.0], 0.9)            # 4 at depth 2 ...
    t.add_path([9, IGNORE, 3], [0.6, 0.1, 1.0], 0.6)       # ... adds nothing IGNORE does not match
    t.add_path([9, 4], [0.8, 1.0], 0.8)                    # a different shape: kept
    assert t.merge_ignorable_siblings() == 0                # [9,4] has an END, [9,*] does not
    t2 = Trie()
    t2.add_path([9, 4, 3], [0.9, 0.9, 1.0], 0.9)
    t2.add_path([9, IGNORE, 3], [0.6, 0.1, 1.0], 0.6)
    assert t2.finalize() is t2 and len(t2.paths()) == 1
    (labels, v), = t2.paths()
    assert labels == (9, IGNORE, 3) and v == pytest.approx(0.75)


def test_match_names_the_predicting_end_node():
    t = _trie(([9, IGNORE, 3], 0.9), ([9], 0.55), ([9, 2], 0.7))
    ids = np.array([3, 2, 9, 1, 1, 9, 4])
    vals, nodes = t.match(ids)
    assert vals.tolist() == pytest.approx([0.0, 0.0, 0.9, 0.0, 0.0, 0.55, 0.0])
    assert nodes[[0, 1, 3, 4, 6]].tolist() == [-1] * 5
    assert [t.end_value(int(u)) for u in nodes[[2, 5]]] == pytest.approx([0.9, 0.55])
    # equally long matches: the larger value, and its node
    t2 = Trie()                                             # not finalised: the two would be merged
    t2.add_path([9, 2], [0.7, 1.0], 0.7)
    t2.add_path([9, IGNORE], [0.6, 1.0], 0.6)
    v, u = t2.match(np.array([2, 9]))
    assert v[1] == pytest.approx(0.7) and t2.end_value(int(u[1])) == pytest.approx(0.7)


def test_calibrate_gives_paths_negative_evidence():
    t = _trie(([9, IGNORE, 3], 0.9), ([9], 0.8))
    before = t.predict(np.array([1, 1, 9]))[2]
    assert before == pytest.approx(0.8)                     # firing-only END values: 9 alone always fires
    # in whole texts 9 fires only two tokens after a 3; elsewhere it is weak
    ids = np.array([3, 0, 9, 1, 1, 9, 5, 9, 7])
    acts = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.1, 0.0, 0.3, 0.0])
    assert t.calibrate(ids, None, acts) == 2
    pred = t.predict(np.array([3, 4, 9, 1, 1, 9]))
    assert pred[2] == pytest.approx(1.0) and pred[5] == pytest.approx(0.2)   # mean of 0.1 and 0.3
    # END nodes never reached keep their value; a fresh trie is untouched by texts it never matches
    t3 = _trie(([8], 0.7))
    assert t3.calibrate(np.array([1, 2]), None, np.array([0.0, 0.0])) == 0 and t3.predict(np.array([8]))[0] == 0.7
    # survives the JSON round trip
    assert np.allclose(Trie.from_json(t.to_json()).predict(ids), t.predict(ids))


def test_trie_json_round_trip_and_validation():
    t = _trie(([5, 4], 0.8), ([7, IGNORE, IGNORE, 1], 0.6))
    t2 = Trie.from_json(json.loads(json.dumps(t.to_json())))
    ids = np.random.default_rng(0).integers(0, 10, 500)
    assert np.array_equal(t.predict(ids), t2.predict(ids))
    with pytest.raises(ValueError, match="root"):
        Trie.from_json([[1, 2, 3, 4, 5]])
    with pytest.raises(ValueError, match="IGNORE"):
        Trie.from_json([[-2, -1, 0.0, 0.0, 0], [IGNORE, 0, 0.0, 0.0, 0]])


def test_predict_is_vectorised_over_thousands_of_tokens():
    rng = np.random.default_rng(1)
    t = Trie()
    for _ in range(200):
        n = int(rng.integers(1, 6))
        labels = [int(rng.integers(0, 50))] + [int(x) if x >= 0 else IGNORE for x in rng.integers(-5, 50, n - 1)]
        t.add_path(labels, [1.0] * n, float(rng.uniform(0.5, 1)))
    t.finalize()
    ids = rng.integers(0, 50, 20000)
    fast = t.predict(ids)
    # brute force: longest matching path, max among ties
    paths = t.paths()
    for j in rng.choice(len(ids), 300, replace=False):
        best = (0, 0.0)
        for labels, v in paths:
            if j - len(labels) + 1 < 0:
                continue
            if all(lab == IGNORE or ids[j - i] == lab for i, lab in enumerate(labels)):
                best = max(best, (len(labels), v))
        assert fast[j] == pytest.approx(best[1])


# ---------------------------------------------------------------------- unit: prune + importance, synthetic model
class _RuleForward:
    """Stands in for fit_tries' forward runner (same interface, no model): a 'neuron' whose activation at position
    j is ``rule(seq, j)``."""

    adapter = None

    def __init__(self, rule):
        self.rule = rule

    def __call__(self, requests):
        return [np.array([self.rule(seq, j) for j in range(len(seq))], dtype=np.float32) for seq, _ in requests]


def _context_forward():
    """Fires 1.0 on token 7 when a token 5 occurs anywhere before it (0.1 on 7 otherwise, 0 on other tokens)."""
    return _RuleForward(lambda seq, j: (1.0 if 5 in seq[:j] else 0.1) if seq[j] == 7 else 0.0)


@pytest.mark.parametrize("context_at,expected_start", [(22, 20), (12, 10), (2, 0)])
def test_prune_keeps_the_right_window(context_at, expected_start):
    ids = [1] * 30
    ids[25] = 7          # the pivot
    ids[context_at] = 5  # the context it needs
    cfg = N2GConfig(n_substitutes=0, post_context=2)
    (trie, stats), = fit_tries(_context_forward(), [(0, 1.0, [Prompt(tuple(ids), 25)])], cfg, NoAugmentation(), 99)
    # the shortest prefix starting 5, 10, ... 30 tokens back that still holds the 5; else the whole prefix
    assert stats.pruned_lengths == [25 - expected_start + 1 + 2]
    assert stats.prune_fallbacks == (1 if expected_start == 0 else 0)
    # importance by masking: only the 5 matters, so the path is 7, IGNORE x gap, 5
    assert [p for p, _ in trie.paths()] == [(7,) + (IGNORE,) * (25 - context_at - 1) + (5,)]
    assert trie.predict(np.array(ids))[25] == 1.0


def _two_token_forward():
    """Token 7 fires 1.0 anywhere; token 8 fires 0.6 when a 6 occurs before it and 0.35 otherwise (still more
    than half of 0.6, but below the 0.5 activation threshold)."""
    return _RuleForward(lambda seq, j: 1.0 if seq[j] == 7 else (0.6 if 6 in seq[:j] else 0.35) if seq[j] == 8
                        else 0.0)


def test_extra_pivot_window_keeps_it_firing():
    ids = [1] * 40
    ids[30] = 7   # the main pivot
    ids[12] = 6   # the context token 8 needs to fire
    ids[20] = 8   # an extra pivot: 0.6 in the whole example
    cfg = N2GConfig(n_substitutes=0, pivots_per_example=2)
    (trie, _), = fit_tries(_two_token_forward(), [(0, 1.0, [Prompt(tuple(ids), 30)])], cfg, NoAugmentation(), 99)
    # Windows starting 5 tokens before the 8 keep 0.35 > 0.5 * 0.6 but do not fire: the window must reach the 6.
    starts = [p[0] for p, _ in trie.paths()]
    assert 8 in starts and 7 in starts
    assert trie.predict(np.array(ids))[20] == pytest.approx(0.6)


class _Substitutes(Augmenter):
    """A fixed substitute table (token -> substitutes), standing in for an augmenter."""

    name = "table"

    def __init__(self, table):
        self.table = table

    def substitutes(self, adapter, requests, n, min_prob):
        return [list(self.table.get(int(ids[p]), []))[:n] for ids, p in requests]


def test_augmenting_every_pivot_finds_firing_tokens_the_example_lacks():
    # 7, 8 and 9 fire wherever they are; 9 never occurs in the example, 8 three times in different contexts
    rule = _RuleForward(lambda seq, j: {7: 1.0, 8: 0.8, 9: 0.7}.get(seq[j], 0.0))
    ids = list(range(10, 50))
    ids[35] = 7
    ids[8] = ids[18] = ids[28] = 8
    aug = _Substitutes({8: [9, 2], 7: [3]})

    def fit(**kw):
        (trie, stats), = fit_tries(rule, [(0, 1.0, [Prompt(tuple(ids), 35)])],
                                   N2GConfig(pivots_per_example=4, **kw), aug, 99)
        return trie, stats

    main, s_main = fit()
    assert 8 in main.activating_tokens() and 9 not in main.activating_tokens()
    assert s_main.variants == 1                       # the paper: only the main pivot's window (7 -> 3)
    every, s_all = fit(augment_pivots="all")
    assert 9 in every.activating_tokens()
    assert every.predict(np.array([1, 1, 9]))[2] == pytest.approx(0.7)
    assert s_all.variants == 1 + 2 * 2                # 8 augmented in augment_repeats=2 of its 3 windows
    assert fit(augment_pivots="all", augment_repeats=3)[1].variants == 1 + 3 * 2


class _Recording(_RuleForward):
    """A _RuleForward that keeps every sequence it was asked to run."""

    def __init__(self, rule):
        super().__init__(rule)
        self.seen = []

    def __call__(self, requests):
        self.seen.extend(seq for seq, _ in requests)
        return super().__call__(requests)


def test_masked_rows_stop_at_the_last_token_that_matters():
    # 7 and 9 fire with a 5 among the three tokens before them (0.1 without); 8 fires anywhere.
    # The rule is causal, like every model N2G accepts: a token's activation depends on it and the tokens before.
    run = _Recording(lambda seq, j: {7: 1.0 if 5 in seq[max(0, j - 3):j] else 0.1,
                                     9: 0.9 if 5 in seq[max(0, j - 3):j] else 0.1, 8: 0.7}.get(seq[j], 0.0))
    ids = list(range(10, 50))
    ids[31], ids[33], ids[35], ids[37] = 8, 5, 7, 8
    aug = _Substitutes({7: [9, 3], 5: [6]})
    (trie, stats), = fit_tries(run, [(0, 1.0, [Prompt(tuple(ids), 35)])], N2GConfig(), aug, 99)
    # The window is ids[30:40]: the pivot at 5, its context 5 at 3, firing 8s at 1 and 7 (post context).
    assert stats.pruned_lengths == [10]
    assert sorted(p for p, _ in trie.paths()) == [(7, IGNORE, 5), (8,), (9, IGNORE, 5)]
    assert dict(trie.paths())[(8,)] == pytest.approx(0.7)
    # What the literal method adds: the window's 3 firing tokens; 7 -> 9: 8, 9, 8; 7 -> 3: 8, 8; 5 -> 6: 8, 8
    # (the 7 no longer fires). Paths before a variant's substitution come from its window, not a new forward.
    assert stats.variants == 3 and stats.firing_variants == 3 and stats.paths == 3 + 3 + 2 + 2
    masked = [seq for seq in run.seen if 99 in seq]
    # masked rows end at the last firing token (position 7 of 10) and tokens after it are never masked
    assert masked and max(len(seq) for seq in masked) == 8
    assert all(seq.index(99) < 8 for seq in masked)


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


def _synthetic_graph(token_strs):
    t = _trie(([5, 6], 0.9), ([6], 0.7))
    return NeuronGraph(layer=0, neuron=3, trie=t, max_activation=2.0, config=N2GConfig(),
                       token_strs=token_strs, examples={"train": [], "test": []})


def test_every_token_is_escaped():
    g = _synthetic_graph({5: "<script>alert(1)</script>", 6: "&amp;'\""})
    for out in (g.to_svg(), g._repr_html_(), ml.n2g.site_section(g)):
        assert "<script" not in out and "&lt;script&gt;" in out
        assert "&amp;amp;" in out
    fig = g.figure()
    assert type(fig).__name__ == "Figure"
    G = g.to_networkx()
    assert set(G.nodes) == {(0, 5), (0, 6), (1, 6)} and G.has_edge((0, 5), (1, 6))
    full = g.to_networkx(condensed=False)
    assert any(d.get("kind") == "end" for _, d in full.nodes(data=True))


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


def test_load_layer_rejects_bad_layer_and_missing_dir(tmp_path):
    for bad in (-1, 1.5, "0", True):
        with pytest.raises(ValueError, match="layer must be a non-negative integer"):
            ml.n2g.load_layer(tmp_path, bad)
    with pytest.raises(ScanFileError, match=r"L2 does not exist"):
        ml.n2g.load_layer(tmp_path, 2)
    _synthetic_graph({5: "a", 6: "b"}).save(tmp_path / "L0" / "N3.json")
    got = ml.n2g.load_layer(tmp_path, np.int64(0))
    assert list(got) == [3] and got[3].neuron == 3 and got.layer == 0


def test_load_layer_file_name_must_match_its_graph(tmp_path):
    g = _synthetic_graph({5: "secret-token", 6: "b"})  # layer 0, neuron 3
    g.save(tmp_path / "L0" / "N4.json")
    with pytest.raises(ScanFileError, match=r"N4\.json: the file name does not match") as e:
        ml.n2g.load_layer(tmp_path, 0)
    assert "secret-token" not in str(e.value)
    g.save(tmp_path / "L1" / "N3.json")  # right neuron, wrong layer
    with pytest.raises(ScanFileError, match=r"L1.N3\.json: the file name does not match"):
        ml.n2g.load_layer(tmp_path, 1)
    os.remove(tmp_path / "L0" / "N4.json")
    g.save(tmp_path / "L0" / "N3.json")
    g.save(tmp_path / "L0" / "N003.json")  # not a name explain_layer writes: never read
    assert list(ml.n2g.load_layer(tmp_path, 0)) == [3]


def test_index_search_similar_and_round_trip(tmp_path):
    a = _synthetic_graph({5: " try", 6: " except"})
    b = NeuronGraph(layer=1, neuron=7, trie=_trie(([6], 0.8)), max_activation=1.0, config=N2GConfig(),
                    token_strs={6: " except"}, examples={})
    idx = NeuronIndex([a, b])
    assert [r[:2] for r in idx.search(activating="except")] == [(1, 7), (0, 3)]   # by activation
    assert [r[:2] for r in idx.search(activating="except", important="try")] == []   # the pattern is "except, then try"
    assert [r[:2] for r in idx.search(activating="try", important="except")] == [(0, 3)]
    assert [r[:2] for r in idx.search(important="except")] == [(0, 3)]
    assert idx.similar(threshold=0.5) == [((0, 3), (1, 7), 0.5)]
    idx2 = NeuronIndex.load(idx.save(tmp_path / "index.json"))
    assert idx2.search(activating="try", important="except") == idx.search(activating="try", important="except")
    with pytest.raises(ValueError):
        idx.search()


# ---------------------------------------------------------------------- integration: the real tiny LM
@pytest.fixture(scope="module")
def code_scan(tiny):
    return ml.scan(tiny, ml.datasets.stdlib_code(n_docs=120), overflow="windows", top_k=20, progress=False)


def _token_selective_neuron(scan, layer=0):
    """The live layer-0 neuron whose top examples most often peak on one and the same token."""
    best = None
    for n in range(scan.d_mlp):
        ex = scan.top_examples(layer, n, 20)
        if len(ex) < 20 or scan.stats.max[layer, n] <= 0.5:
            continue
        tok, c = Counter(ex.max_tokens()).most_common(1)[0]
        if best is None or c > best[0]:
            best = (c, n, tok)
    return best


def test_fit_predicts_firing_on_held_out_text(tiny, code_scan):
    count, n, tok = _token_selective_neuron(code_scan)
    assert count >= 15
    ex = code_scan.top_examples(0, n, 20)
    g = NeuronGraph.fit(tiny, 0, n, ex, seed=0)
    assert len(g.examples["train"]) == 10 and len(g.examples["test"]) == 10
    assert g.meta["mask_token_str"] == "<|endoftext|>"     # GPT-2 style: pad = BOS = EOS
    assert g.meta["cost"]["forward_calls"] <= 10           # pooled stages, not one forward per prompt
    assert any(t == tok for t in g.activating_tokens())
    s = ml.n2g.evaluate(g, tiny, random=[code_scan.tokens(d)[1:200].tolist() for d in range(100, 110)])
    assert s["n_firing_test_tokens"] > 0 and not s["no_firing_test_token"]
    assert s["n2g"]["firing_recall"] > 0.3 and s["n2g"]["firing_precision"] > 0.3
    assert s["n2g"]["nonfiring_f1"] > 0.9 and s["n2g"]["correlation"] > 0.3
    assert set(s) >= {"token", "ngram"}
    # the same prediction from text and from ids; a held-out text fires where the neuron really fires
    text = tiny.tokenizer.decode(g.examples["test"][0])
    assert np.array_equal(g.predict(text), g.predict(tiny.tokenizer(text, add_special_tokens=False)["input_ids"]))
    true = ml.token_activations(tiny, [[0] + g.examples["test"][0]], [0])[0][0][1:, n] / g.max_activation
    pred = g.predict(g.examples["test"][0])
    assert np.any((true >= 0.5) & (pred >= 0.5))


def test_fit_calibrated_end_values(tiny, code_scan):
    _, n, _ = _token_selective_neuron(code_scan)
    ex = code_scan.top_examples(0, n, 20)
    g = NeuronGraph.fit(tiny, 0, n, ex, seed=0, config=N2GConfig(end_values="calibrated"))
    assert g.meta["fit"]["calibrated_ends"] > 0
    # every END value reached in the training texts is the mean true activation where it is the longest match
    train = [list(t) for t in g.examples["train"]]
    acts = [a[1:, n] / g.max_activation for a in (ml.token_activations(tiny, [[0] + t], [0])[0][0] for t in train)]
    lens = [len(t) for t in train]
    vals, nodes = g.trie.match(np.concatenate(train), np.repeat(np.cumsum([0] + lens[:-1]), lens))
    true = np.concatenate(acts)
    for u in np.unique(nodes[nodes >= 0])[:20]:
        assert g.trie.end_value(int(u)) == pytest.approx(float(true[nodes == u].mean()), abs=1e-4)


def test_token_probe_ranks_tokens_by_the_neuron_alone(tiny, code_scan):
    from mri_lens.adapter import as_adapter
    from mri_lens.capture import get_backend

    _, n, _ = _token_selective_neuron(code_scan)
    adapter = as_adapter(tiny)
    run = Forward(adapter, get_backend(adapter), 0)
    probe = TokenProbe()
    ids = tuple(code_scan.tokens(0)[1:30].tolist())
    with pytest.raises(ModelAdapterError, match="neuron"):
        probe.substitutes(adapter, [(ids, 5)], 4, 0.0)
    subs = probe.substitutes_for(run, [(ids, 5)] * 3, [n] * 3, 4, 0.0)
    flat = [t for s in subs for t in s]
    # successive requests of a neuron walk down its ranking: 12 distinct tokens, never the token replaced
    assert len(flat) == len(set(flat)) == 12 and ids[5] not in flat
    # the ranking is the neuron's activation on each token alone, recomputed here through token_activations
    rng = np.random.default_rng(0)
    others = [int(t) for t in rng.choice(np.setdiff1d(np.arange(1, 4096), flat), 40, replace=False)]
    alone = np.array([a[0][1, n] for a in ml.token_activations(tiny, [[0, t] for t in flat + others], [0])])
    assert np.all(np.diff(alone[:12]) <= 1e-5) and alone[0] >= alone[12:].max()
    # fitted with the probe, the graph learns firing tokens its training examples never showed
    ex = code_scan.top_examples(0, n, 20)
    g = NeuronGraph.fit(tiny, 0, n, ex, seed=0, augmenter="probe",
                        config=N2GConfig(end_values="calibrated", n_substitutes=10))
    assert g.meta["augmenter"]["name"] == "token_probe"
    seen = {int(t) for text in g.examples["train"] for t in text}
    new = set(g.trie.activating_tokens()) - seen
    alone_paths = sorted(p[0] for p, _ in g.trie.paths() if len(p) == 1 and p[0] in new)
    assert alone_paths                                     # ... and predicts them firing with no context
    assert np.all(g.predict(alone_paths) > 0.5)


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


def test_explain_layer_batched_resumable_and_site(tiny, code_scan, tmp_path):
    neurons = [int(n) for n in np.argsort(-code_scan.stats.max[0])[:4]]
    out = tmp_path / "n2g"
    r1 = ml.n2g.explain_layer(tiny, code_scan, 0, neurons, out_dir=out, progress=False)
    assert sorted(r1) == sorted(neurons) and r1.cost["neurons_fitted"] == 4
    # pooled stages for all four neurons: at most 10 forwards per neuron (a tenth of the reference's 100-300)
    assert r1.cost["fit_forward_calls"] <= 4 * 10
    assert all(g.scores is not None for g in r1.values())
    assert os.path.exists(out / "L0" / "summary.csv") and os.path.exists(out / "L0" / "summary.json")
    r2 = ml.n2g.explain_layer(tiny, code_scan, 0, neurons, out_dir=out, progress=False)
    assert r2.cost["fit_forward_calls"] == 0 and r2.cost["eval_forward_calls"] == 0   # resumed, nothing rerun
    assert all(r2[n].to_json() == r1[n].to_json() for n in neurons)
    table = r2.table()
    assert table.loc[0, "neurons"] == 4 and "token_firing_f1" in table
    idx = NeuronIndex(r2)
    tok = r2[neurons[0]].activating_tokens()[0]
    assert any(r[1] == neurons[0] for r in idx.search(activating=tok))
    # the Neuroscope site shows the graph and its scores on neuron pages
    index = ml.neuroscope_site(code_scan, tiny, tmp_path / "site", layers=[0], neurons=neurons[:2],
                               n2g={(0, n): g for n, g in r2.items()})
    page = open(os.path.join(os.path.dirname(index), "L0", f"N{neurons[0]}.html"), encoding="utf-8").read()
    assert "N2G graph" in page and "<svg" in page and "firing F1" in page
    page = open(os.path.join(os.path.dirname(index), "L0", f"N{neurons[1]}.html"), encoding="utf-8").read()
    assert "N2G graph" in page


def test_cli_explain(tiny, code_scan, tmp_path, capsys):
    from mri_lens.cli import main

    scan_dir = code_scan.save(tmp_path / "scan")
    out = tmp_path / "n2g"
    rc = main(["explain", "--scan", scan_dir, "--model", "tiny", "--layer", "1", "--neurons", "0-2", "--out",
               str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "N2G graphs written" in printed
    files = sorted(os.listdir(out / "L1"))
    assert "summary.csv" in files and any(f.startswith("N") for f in files)
    assert main(["explain", "--scan", scan_dir, "--model", "tiny", "--layer", "0", "--neurons", "9999", "--out",
                 str(out), "--quiet"]) == 2
    # the extensions are reachable from the command line and recorded in each saved graph
    ext = tmp_path / "n2g_ext"
    assert main(["explain", "--scan", scan_dir, "--model", "tiny", "--layer", "1", "--neurons", "0", "--out",
                 str(ext), "--pivots", "3", "--end-values", "calibrated", "--augment", "all", "--augmenter",
                 "probe", "--substitutes", "7", "--quiet"]) == 0
    saved = [f for f in os.listdir(ext / "L1") if f.startswith("N") and f.endswith(".json")]
    g = ml.NeuronGraph.load(ext / "L1" / saved[0])
    cfg = g.config
    assert cfg.pivots_per_example == 3 and cfg.end_values == "calibrated" and cfg.augment_pivots == "all"
    assert cfg.n_substitutes == 7 and g.meta["augmenter"]["name"] == "token_probe"
