"""N2G lens: explain a neuron as a graph of the token patterns that make it fire (Foote et al., 2023).

>>> ex = scan.top_examples(layer=0, neuron=42, k=20)                            # doctest: +SKIP
>>> ng = ml.NeuronGraph.fit(model, layer=0, neuron=42, examples=ex, seed=0)    # doctest: +SKIP
>>> ng.predict("for i in range(10):")                                           # doctest: +SKIP
>>> ml.n2g.evaluate(ng, model, random=["x = 1", "import os"])                   # doctest: +SKIP
>>> graphs = ml.n2g.explain_layer(model, scan, layer=0, neurons=range(64))     # doctest: +SKIP
>>> ml.n2g.NeuronIndex(graphs).search(activating="except", important="try")    # doctest: +SKIP
"""

from .augment import Augmenter, EmbeddingNeighbours, FillMaskAugmenter, NoAugmentation, TokenProbe
from .batch import LayerGraphs, demo_section, explain_layer, load_layer, site_section
from .config import N2GConfig
from .evaluate import NgramLookup, TokenLookup, evaluate, summary_table
from .graph import NeuronGraph
from .index import NeuronIndex
from .trie import IGNORE, Trie

__all__ = ["Augmenter", "EmbeddingNeighbours", "FillMaskAugmenter", "NoAugmentation", "TokenProbe", "N2GConfig",
           "NeuronGraph",
           "IGNORE", "Trie", "evaluate", "summary_table", "TokenLookup", "NgramLookup", "explain_layer",
           "load_layer", "LayerGraphs", "NeuronIndex", "demo_section", "site_section"]
