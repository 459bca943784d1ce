"""N2G augmenters (mri_lens.lenses.n2g.augment) on the real tiny LM."""

from __future__ import annotations

import numpy as np
import pytest

from mri_lens.model import token_activations
from mri_lens.errors import ModelAdapterError
from mri_lens.lenses.n2g.augment import TokenProbe
from mri_lens.lenses.n2g.config import N2GConfig
from mri_lens.lenses.n2g.fit import Forward
from mri_lens.lenses.n2g.neuron_graph import NeuronGraph

from .builders import _token_selective_neuron


def test_token_probe_ranks_tokens_by_the_neuron_alone(tiny, code_scan):
    from mri_lens.model.adapter import as_adapter
    from mri_lens.model.capture import get_backend

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
    alone = np.array([a[0][1, n] for a in token_activations(tiny, [[0, t] for t in flat + others], [0])])
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
