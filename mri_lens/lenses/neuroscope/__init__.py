"""The Neuroscope lens: thresholded token views of a few prompts across layers (:func:`view`,
:mod:`.token_view`), an offline site for every neuron of a scan, data files and one viewer (:func:`site`,
:mod:`.neuron_site`, :mod:`.site_data`, :mod:`.site_records`, ``viewer/``), what its pages show beside the examples
(:mod:`.neuron_facts`), neurons found from a scan alone (:func:`find`, :mod:`.find_neurons`), and ready-made prompts
(:mod:`.prompts`).

>>> v = ml.neuroscope.view(model, ml.neuroscope.prompts.sequence_prompts(), hi=3.0)   # doctest: +SKIP
>>> ml.neuroscope.site(scan, model, "runs/x/site", layers=[0, 1])                     # doctest: +SKIP
>>> ml.neuroscope.find(scan, token=" except")                                          # doctest: +SKIP
"""

from . import neuron_facts, prompts
from .find_neurons import find
from .neuron_site import site
from .token_view import ColorBins, NeuroscopeView, OfflineHTML, view

__all__ = ["ColorBins", "NeuroscopeView", "OfflineHTML", "view", "site", "find", "prompts", "neuron_facts"]
