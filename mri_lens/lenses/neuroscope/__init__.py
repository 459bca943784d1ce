"""The Neuroscope lens: thresholded token views of a few prompts across layers (:func:`view`,
:mod:`.token_view`), neuron pages and an offline static site built from a scan (:func:`site`, :mod:`.neuron_site`),
and ready-made prompts (:mod:`.prompts`).

>>> v = ml.neuroscope.view(model, ml.neuroscope.prompts.sequence_prompts(), hi=3.0)   # doctest: +SKIP
>>> ml.neuroscope.site(scan, model, "runs/x/site", layers=[0, 1])                     # doctest: +SKIP
"""

from . import prompts
from .neuron_site import site
from .token_view import ColorBins, NeuroscopeView, OfflineHTML, view

__all__ = ["ColorBins", "NeuroscopeView", "OfflineHTML", "view", "site", "prompts"]
