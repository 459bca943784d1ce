"""N2G trie (mri_lens.lenses.n2g.trie): the importance formula, paths, matching, merging, calibration, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mri_lens.lenses.n2g.trie import IGNORE, Trie, importance_matrix, paths_from_prompt

from .builders import _trie


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
