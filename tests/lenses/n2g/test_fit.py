"""N2G fitting (mri_lens.lenses.n2g.fit): prune, importance by masking and augmentation on synthetic 'neurons'
(rules standing in for the forward runner, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from mri_lens.lenses.n2g.augment import Augmenter, NoAugmentation
from mri_lens.lenses.n2g.config import N2GConfig
from mri_lens.lenses.n2g.fit import Prompt, fit_tries
from mri_lens.lenses.n2g.trie import IGNORE


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
    cfg = N2GConfig.paper(n_substitutes=0, post_context=2)
    (trie, stats, _), = fit_tries(_context_forward(), [(0, 1.0, [Prompt(tuple(ids), 25)])], cfg, NoAugmentation(), 99)
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
    cfg = N2GConfig.paper(n_substitutes=0, pivots_per_example=2)
    (trie, _, _), = fit_tries(_two_token_forward(), [(0, 1.0, [Prompt(tuple(ids), 30)])], cfg, NoAugmentation(), 99)
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
        (trie, stats, _), = fit_tries(rule, [(0, 1.0, [Prompt(tuple(ids), 35)])],
                                   N2GConfig.paper(pivots_per_example=4, **kw), aug, 99)
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
    (trie, stats, _), = fit_tries(run, [(0, 1.0, [Prompt(tuple(ids), 35)])], N2GConfig.paper(), aug, 99)
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
