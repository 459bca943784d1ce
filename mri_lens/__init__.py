"""mri_lens: neuron-level interpretability lenses for TransformerLens models.

Pipeline: model + corpus -> :func:`scan` -> lenses -> figures / report.

>>> import mri_lens as ml
>>> model = ml.models.tiny_lm()                        # doctest: +SKIP
>>> scan = ml.scan(model, ["def f(x):", "import os"])  # doctest: +SKIP
"""

__version__ = "0.1.0"

from . import datasets, models, prompts, regions
from .adapter import HFModel, HookedModel, ModelAdapter, load_model
from .capture import CaptureBackend, HuggingFaceBackend, TransformerLensBackend, token_activations
from .corpus import Corpus
from .errors import CorpusError, ModelAdapterError, MriLensError, ScanError, ScanFileError
from .neuroscope import ColorBins, NeuroscopeView, neuroscope
from . import n2g
from .n2g import N2GConfig, NeuronGraph
from .regions import RegionMaps, separability
from .graph import (CategoryComparison, CoactivationCounts, GraphError, GraphMetrics, coactivation_counts,
                    coactivation_graph, compare_categories, enrich, graph_figure, graph_metrics, load_graph_json,
                    write_graph)
from .scanner import scan
from .site import neuroscope_site
from .store import NeuronStats, Scan, TopExamples, TopK

__all__ = [
    "__version__", "datasets", "models", "HFModel", "HookedModel", "HuggingFaceBackend", "ModelAdapter", "load_model",
    "CaptureBackend",
    "TransformerLensBackend", "token_activations", "Corpus", "CorpusError", "ModelAdapterError", "MriLensError",
    "ScanError", "ScanFileError", "scan", "NeuronStats", "Scan", "TopExamples", "TopK", "prompts", "neuroscope",
    "neuroscope_site", "NeuroscopeView", "ColorBins", "n2g", "N2GConfig", "NeuronGraph", "regions", "RegionMaps", "separability",
    "CategoryComparison", "CoactivationCounts", "GraphError", "GraphMetrics", "coactivation_counts",
    "coactivation_graph", "compare_categories", "enrich", "graph_figure", "graph_metrics", "load_graph_json",
    "write_graph",
]
