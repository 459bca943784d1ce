"""Neuroscope lens, ready-made prompts: what they give the demo's and the CLI's view on the tiny LM."""

from __future__ import annotations

import numpy as np

import mri_lens as ml
from mri_lens.model.adapter import ModelAdapter

from oracle import per_token_activations

HI = 3.0  # the threshold `mri-lens demo` views these prompts with


def test_sequence_prompts_give_every_layer_of_the_view_neurons(tiny):
    """The three pattern prompts, viewed as the demo views them: each fits the model's context and is shown whole
    after BOS, and every layer of the tiny LM has neurons above the threshold on some real token of them, exactly
    the neurons a plain ``run_with_cache`` of each prompt alone puts there."""
    prompts = ml.neuroscope.prompts.sequence_prompts()
    assert len(prompts) == len(set(prompts)) == 3
    v = ml.neuroscope.view(tiny, prompts, hi=HI, lo=0.0, select="hi", max_neurons_per_layer=None)
    assert ["".join(t[v.n_excluded_prefix:]) for t in v.str_tokens] == prompts
    ids = [s[0] for s in ModelAdapter(tiny).encode(prompts)[0]]
    assert all(len(s) <= tiny.cfg.n_ctx for s in ids)
    acts = per_token_activations(tiny, ids, v.layers)
    for l in v.layers:
        up = np.concatenate([a[l][1:] for a in acts]).max(0)  # [d_mlp]: strongest real token per neuron
        want, amb = set(np.flatnonzero(up > HI).tolist()), set(np.flatnonzero(np.abs(up - HI) < 1e-4).tolist())
        assert want - amb, f"no layer-{l} neuron passes {HI} on these prompts"
        assert not (set(v.neurons[l].tolist()) ^ want) - amb, f"layer {l}"
