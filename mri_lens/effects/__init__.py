"""Effects: test what a neuron does by changing it and measuring what the model then does.

- :func:`ablate` (zero, or the mean from a scan's statistics) and :func:`steer` (set to a value, scale, shift) one
  neuron or a set at every position, measured per token as the change in next-token loss and in the logits
  (:class:`Effect`); encoders (BERT, MiniLM), which predict no next token, get the change of their final hidden
  state instead.
- :func:`neuron_effects`: one neuron ablated on its top examples and on random documents of a scan.
- :func:`attribution`: attribution patching for every neuron of a layer (activation x gradient of the loss, one
  backward pass); :func:`ablate_each`: the exact ablation of each neuron, to check it (:class:`NeuronScores`);
  :func:`attribution_by_doc`: the same per document (:class:`DocScores`), e.g. for each neuron on its own top
  examples.

Inputs are texts (tokenised by the adapter, BOS as configured) or a scan's documents (its stored tokens:
:func:`top_docs`, :func:`random_docs`); batches are padded and pads never reach a loss. Every edit goes through
:func:`mri_lens.model.edited_forward`, which removes its hooks also when the forward fails.

>>> eff = ml.effects.ablate(model, layer=1, neurons=[88], texts=docs)   # doctest: +SKIP
>>> eff.loss_change, eff.table, eff.top_logits(10)                     # doctest: +SKIP
>>> att = ml.effects.attribution(model, layer=1, texts=docs)            # doctest: +SKIP
>>> att.ranking()[:10]                                                  # doctest: +SKIP
"""

from .api import ablate, neuron_effects, scan_means, steer
from .attribution import ablate_each, attribution, attribution_by_doc
from .inputs import random_docs, top_docs
from .results import DocScores, Effect, NeuronEffects, NeuronScores

__all__ = ["ablate", "steer", "neuron_effects", "attribution", "attribution_by_doc", "ablate_each", "scan_means",
           "top_docs", "random_docs", "Effect", "NeuronScores", "DocScores", "NeuronEffects"]
