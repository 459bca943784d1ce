"""N2G lens: explain a neuron as a graph of the token patterns that make it fire (Foote et al., 2023).

>>> ex = scan.top_examples(layer=0, neuron=42, k=20)                            # doctest: +SKIP
>>> ng = ml.n2g.NeuronGraph.fit(model, layer=0, neuron=42, examples=ex, seed=0)    # doctest: +SKIP
>>> paper = ml.n2g.NeuronGraph.fit(model, 0, 42, ex, config=ml.n2g.N2GConfig.paper())  # doctest: +SKIP
>>> ng.predict("for i in range(10):")                                           # doctest: +SKIP
>>> ml.n2g.evaluate(ng, model, random=["x = 1", "import os"])                   # doctest: +SKIP
>>> graphs = ml.n2g.explain_layer(model, scan, layer=0, neurons=range(64))     # doctest: +SKIP
>>> ml.n2g.NeuronIndex(graphs).search(activating="except", important="try")    # doctest: +SKIP

Modules (imports go one way, down this list): ``explain`` (many neurons at once) -> ``evaluate`` -> ``neuron_graph``
(:class:`NeuronGraph`) -> ``fit`` (steps 1-4) -> ``augment``, ``fallback`` -> ``config``, ``trie``; the graph's
views ``draw`` (step 6: plotly, SVG, networkx) and ``render`` (HTML, on :mod:`mri_lens.render.html`) import nothing
above them; ``index`` (search) needs only ``trie``.
"""

from .augment import Augmenter, EmbeddingNeighbours, FillMaskAugmenter, NoAugmentation, TokenProbe
from .config import N2GConfig
from .evaluate import NgramLookup, TokenLookup, evaluate, summary_table
from .explain import LayerGraphs, demo_section, explain_layer, load_layer
from .index import NeuronIndex
from .neuron_graph import NeuronGraph
from .render import site_section
from .trie import IGNORE, Trie

__all__ = ["Augmenter", "EmbeddingNeighbours", "FillMaskAugmenter", "NoAugmentation", "TokenProbe", "N2GConfig",
           "NeuronGraph",
           "IGNORE", "Trie", "evaluate", "summary_table", "TokenLookup", "NgramLookup", "explain_layer",
           "load_layer", "LayerGraphs", "NeuronIndex", "demo_section", "site_section"]
