"""The Neuroscope lens: thresholded token views of a few prompts across layers (:func:`view`,
:mod:`.token_view`), neuron pages (:mod:`.neuron_page`) and an offline static site built from a scan (:func:`site`,
:mod:`.neuron_site`), neurons found from a scan alone (:func:`find`, :mod:`.find_neurons`), and ready-made prompts
(:mod:`.prompts`).

>>> v = ml.neuroscope.view(model, ml.neuroscope.prompts.sequence_prompts(), hi=3.0)   # doctest: +SKIP
>>> ml.neuroscope.site(scan, model, "runs/x/site", layers=[0, 1])                     # doctest: +SKIP
>>> ml.neuroscope.find(scan, token=" except")                                          # doctest: +SKIP
"""

from . import prompts
from .find_neurons import find
from .neuron_site import site
from .token_view import ColorBins, NeuroscopeView, OfflineHTML, view

__all__ = ["ColorBins", "NeuroscopeView", "OfflineHTML", "view", "site", "find", "prompts"]
