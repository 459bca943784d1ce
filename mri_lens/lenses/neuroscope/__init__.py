"""The Neuroscope lens: thresholded token views of a few prompts across layers (:mod:`.view`), neuron pages and an
offline static site built from a scan (:mod:`.site`), and ready-made prompts (:mod:`.prompts`)."""

from . import prompts
from .prompts import sequence_prompts
from .site import neuroscope_site
from .view import ColorBins, NeuroscopeView, OfflineHTML, neuroscope

__all__ = ["ColorBins", "NeuroscopeView", "OfflineHTML", "neuroscope", "neuroscope_site", "prompts",
           "sequence_prompts"]
