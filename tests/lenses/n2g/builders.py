"""Hand-built N2G objects shared by the N2G test modules (no model), and a neuron picker for the tiny LM's scan."""

from __future__ import annotations

from collections import Counter

from mri_lens.lenses.n2g import N2GConfig, NeuronGraph, Trie


def _trie(*paths):
    t = Trie()
    for labels, act in paths:
        t.add_path(labels, [act] + [1.0] * (len(labels) - 1), act)
    return t.finalize()


def _synthetic_graph(token_strs):
    t = _trie(([5, 6], 0.9), ([6], 0.7))
    return NeuronGraph(layer=0, neuron=3, trie=t, max_activation=2.0, config=N2GConfig(),
                       token_strs=token_strs, examples={"train": [], "test": []})


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
