"""N2G scoring (mri_lens.lenses.n2g.evaluate): every scorer against a hand-computed case, and the baselines."""

from __future__ import annotations

import numpy as np
import pytest

from mri_lens.lenses.n2g import N2GConfig, NeuronGraph
from mri_lens.lenses.n2g.evaluate import NgramLookup, TokenLookup, detection, prf, score_activations
from mri_lens.lenses.n2g.fallback import apply_fallback, fit_fallback

from .builders import _trie


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


def test_detection_by_hand():
    # contexts' true max: fire, fire, no, no, no; predicted max: 0.9, 0.2, 0.6, 0.1, 0.0
    d = detection(np.array([0.8, 0.6, 0.3, 0.0, 0.1]), np.array([0.9, 0.2, 0.6, 0.1, 0.0]))
    # predicted firing: yes, no, yes, no, no -> recall on firing 1/2, on non-firing 2/3; balanced = 7/12
    assert d["detection_balanced_accuracy"] == pytest.approx(7 / 12)
    # AUC: pairs (firing, non-firing) ranked right: 0.9 beats all 3; 0.2 beats 0.1 and 0.0, not 0.6 -> 5/6
    assert d["detection_auc"] == pytest.approx(5 / 6)
    assert d["detection_contexts"] == 5 and d["detection_firing_contexts"] == 2
    one = detection(np.array([0.9, 0.8]), np.array([0.1, 0.9]))  # one label only: undefined
    assert one["detection_balanced_accuracy"] is None and one["detection_auc"] is None


def _graph(fallback=None):
    # token 5 fires (END 0.9); token 7 fires after a 6 (END 0.8)
    t = _trie(([5], 0.9), ([7, 6], 0.8))
    return NeuronGraph(layer=0, neuron=0, trie=t, max_activation=2.0, config=N2GConfig.paper(),
                       token_strs={5: "a", 6: "b", 7: "c"}, examples={"train": [], "test": []}, fallback=fallback)


def test_score_activations_by_hand():
    g = _graph()
    test = [(5, 1, 7), (6, 7, 5)]
    test_acts = [np.array([2.0, 0.0, 1.6]), np.array([0.0, 1.8, 0.2])]  # normalised: 1, 0, .8 | 0, .9, .1
    rand, rand_acts = [(1, 2)], [np.array([0.0, 0.4])]                 # normalised 0, .2
    train, train_acts = [(5, 7, 1)], [np.array([2.0, 1.0, 0.0])]       # normalised 1, .5, 0
    scores, ev = score_activations(g, test, test_acts, rand, rand_acts, train, train_acts)
    n2g = scores["n2g"]
    # N2G predicts .9 0 0 | 0 .8 .9: firing truth at 0, 2, 4; predicted at 0, 4, 5 -> P 2/3, R 2/3
    assert n2g["firing_precision"] == pytest.approx(2 / 3) and n2g["firing_recall"] == pytest.approx(2 / 3)
    true = np.array([1, 0, .8, 0, .9, .1, 0, .2])
    pred = np.array([.9, 0, 0, 0, .8, .9, 0, 0])
    assert n2g["correlation"] == pytest.approx(np.corrcoef(true, pred)[0, 1])   # simulation: test + random
    # detection contexts = the 3 texts: true max 1, .9, .2 (fire, fire, no); N2G max .9, .9, 0 -> perfect
    assert n2g["detection_balanced_accuracy"] == 1.0 and n2g["detection_auc"] == 1.0
    # token lookup: 5 -> 1, 7 -> .5, 1 -> 0: predicts 1 0 .5 | 0 .5 1 | 0 0: firing at 0, 2(.5), 4(.5), 5
    tok = scores["token"]
    assert tok["firing_precision"] == pytest.approx(3 / 4) and tok["firing_recall"] == pytest.approx(1.0)
    assert n2g["loses_to_token_lookup"] == 1.0 and ev["winner"] == "token"
    assert ev["n_firing_test_tokens"] == 3 and ev["n_contexts"] == 3 and ev["n_firing_contexts"] == 2
    assert set(scores) == {"n2g", "token", "ngram"}


def test_fallback_by_hand():
    ids = np.array([5, 1, 1, 2, 7])
    nodes = np.array([3, -1, -1, -1, -1])          # only position 0 is covered by a pattern
    acts = np.array([0.9, 0.2, 0.4, 0.0, 0.3])
    fb = fit_fallback("token", ids, nodes, acts)
    assert fb["table"] == [[1, pytest.approx(0.3)], [2, 0.0], [7, 0.3]]
    m = fit_fallback("mean", ids, nodes, acts)
    assert m["default"] == pytest.approx(0.225)
    assert fit_fallback("none", ids, nodes, acts) is None
    got = apply_fallback(fb, np.array([5, 1, 9]), np.array([0.9, 0.0, 0.0]), np.array([3, -1, -1]))
    assert got.tolist() == [0.9, pytest.approx(0.3), 0.0]      # unseen token 9: 0, as token lookup says
    g = _graph(fallback=fb)
    assert g.predict([5, 1, 7]).tolist() == [0.9, pytest.approx(0.3), 0.3]
    back = NeuronGraph.from_dict(g.to_dict())
    assert back.fallback == g.fallback and "fallback" not in _graph().to_dict()
