"""The embedded models: real loading path, model card, and the tiny LM's token-selective neurons."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np

import mri_lens as ml


def test_tiny_lm_card_matches_training_record():
    d = ml.models.tiny_lm_dir()
    rec = json.load(open(os.path.join(d, "training.json")))
    card = open(os.path.join(d, "MODEL_CARD.md")).read()
    assert str(rec["steps"]) in card and f"{rec['held_out_loss']:.3f}" in card
    assert rec["held_out_loss"] < 4.5  # far below uniform over the vocabulary (ln 4096 = 8.3)
    assert os.path.getsize(os.path.join(d, "model.safetensors")) < 8_000_000


def test_tiny_lm_predicts_python(tiny):
    import torch

    tokens = tiny.to_tokens("import os\nimport sys\nimport re\nimport")
    with torch.inference_mode():
        logits = tiny(tokens)
    top = tiny.tokenizer.decode([int(logits[0, -1].argmax())])
    assert top.strip() in {"os", "sys", "re", "json", "time", "math", "io", "warnings", "collections", "types",
                           "string", "functools", "operator", "itertools"} or top.startswith(" ")


def test_layer0_has_token_selective_neurons(tiny, tiny_scan):
    """Neurons whose top examples all peak on the same token: the model learned token features."""
    selective = []
    for n in range(tiny_scan.d_mlp):
        ex = tiny_scan.top_examples(layer=0, neuron=n, k=8)
        if len(ex) < 8 or ex.values[-1] <= 0.1:
            continue
        token, count = Counter(ex.max_tokens()).most_common(1)[0]
        if count >= 7:
            selective.append((n, token))
    assert len(selective) >= 10, selective
    assert len({t for _, t in selective}) >= 5  # many different tokens, not one degenerate feature


def test_trained_neurons_differ_from_random_init(tiny_scan):
    # A trained model has sparse, heavy-tailed neurons: max well above the mean for most of them.
    ratio = tiny_scan.stats.max[0] / (np.abs(tiny_scan.stats.mean[0]) + 1e-6)
    assert np.median(ratio) > 5
