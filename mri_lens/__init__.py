"""mri_lens: neuron-level interpretability lenses for TransformerLens models.

Pipeline: model + corpus -> :func:`scan` -> lenses (:mod:`mri_lens.lenses`: MRI, Neuroscope, N2G) -> figures /
report (:mod:`mri_lens.render`).

>>> import mri_lens as ml
>>> model = ml.models.tiny_lm()                        # doctest: +SKIP
>>> scan = ml.scan(model, ["def f(x):", "import os"])  # doctest: +SKIP
"""

from ._version import __version__
from . import datasets, models
from .adapter import HookedModel, ModelAdapter
from .capture import CaptureBackend, HuggingFaceBackend, TransformerLensBackend, token_activations
from .corpus import Corpus
from .errors import (CategoryError, CorpusError, GraphError, ModelAdapterError, MriLensError, ScanError,
                     ScanFileError)
from .hf import HFModel
from .loading import load_model
from .merge import merge_scans
from .models import ModelSpec
from .scanner import scan
from .store import NeuronStats, Scan, TopExamples, TopK
from .lenses import n2g
from .lenses.mri import (CategoryComparison, CoactivationCounts, GraphMetrics, RegionMaps, coactivation_counts,
                         coactivation_graph, compare_categories, enrich, graph_figure, graph_metrics, load_graph_json,
                         regions, separability, write_graph)
from .lenses.n2g import N2GConfig, NeuronGraph
from .lenses.neuroscope import ColorBins, NeuroscopeView, neuroscope, neuroscope_site, prompts

__all__ = [
    "__version__", "datasets", "models", "HFModel", "HookedModel", "HuggingFaceBackend", "ModelAdapter", "ModelSpec",
    "load_model", "CaptureBackend", "TransformerLensBackend", "token_activations", "Corpus", "CategoryError",
    "CorpusError", "GraphError", "ModelAdapterError", "MriLensError", "ScanError", "ScanFileError", "scan",
    "merge_scans", "NeuronStats", "Scan", "TopExamples", "TopK", "prompts", "neuroscope", "neuroscope_site",
    "NeuroscopeView", "ColorBins", "n2g", "N2GConfig", "NeuronGraph", "regions", "RegionMaps", "separability",
    "CategoryComparison", "CoactivationCounts", "GraphMetrics", "coactivation_counts", "coactivation_graph",
    "compare_categories", "enrich", "graph_figure", "graph_metrics", "load_graph_json", "write_graph",
]
