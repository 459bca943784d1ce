"""The MRI lens (after LLM-MRI): per-layer region maps of a scan, the co-activation graph of their regions across
consecutive layers, its enrichment statistics, metrics, figure and files, two categories compared region by region,
edge by edge and neuron by neuron, and the separability probe.

One concern per module, each imported in one direction only:

- maps: ``regions`` (the :class:`RegionMaps` estimator and its accessors) -> ``summaries`` (category images,
  tables, the notebook display), ``plots`` (its figures), ``maps_io`` (save, load), ``embedding`` (UMAP workers),
  ``geometry`` (grid, alignment); ``probe`` (separability), ``evaluation`` (full vs reduced features). None of
  those imports ``regions``: they take the fitted maps as an argument.
- graph: ``compare`` -> ``coactivation``, ``graph_plot`` -> ``enrichment``; ``metrics``, ``graph_io``; all of them
  -> ``_graph_base`` (file kind, argument checks, count arrays) and ``_stats`` (pure numpy/scipy statistics).
  The graph modules use a map only through its accessors (``layers``, ``activated(layer)``, ``labels``...).
- component graph (maps of any number of components, documents mode): ``components_plot`` -> ``components``
  (Spearman correlations of neighbouring layers' components) -> ``_graph_base``; written by ``graph_io``.

The lens reads the scan only through its public API (``scan.pooled(name, layer=l)``, ``scan.layers``,
``scan.labels``...) and never touches the model.
"""

from ...errors import CategoryError, GraphError
from . import regions
from .coactivation import CoactivationCounts, coactivation_counts, coactivation_graph
from .compare import CategoryComparison, category_difference_figure, category_differences, compare_categories
from .components import component_graph
from .components_plot import component_graph_figure
from .embedding import compile_umap, warm_up
from .enrichment import enrich
from .evaluation import ReductionEvaluation, evaluate_reduction
from .graph_io import load_graph_json, write_graph
from .graph_plot import graph_figure
from .metrics import GraphMetrics, graph_metrics
from .neuron_links import EnrichedRegion, enriched_region_neurons, neuron_links, neuron_regions
from .probe import separability
from .regions import RegionMaps

__all__ = [
    "RegionMaps", "separability", "warm_up", "compile_umap", "regions",
    "CoactivationCounts", "coactivation_counts", "coactivation_graph", "enrich", "graph_figure", "GraphMetrics",
    "graph_metrics", "CategoryComparison", "compare_categories", "category_differences",
    "category_difference_figure", "write_graph", "load_graph_json", "GraphError", "CategoryError",
    "neuron_links", "neuron_regions", "enriched_region_neurons", "EnrichedRegion",
    "component_graph", "component_graph_figure",
    "evaluate_reduction", "ReductionEvaluation",
]
