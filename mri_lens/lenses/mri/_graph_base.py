"""What the co-activation graph modules share: the file kind and schema version written into ``g.graph``, the
checks of the trimming / FDR arguments, the lookup of a graph's categories, and the per-row count arrays read back
from a graph's node and edge attributes (``docs`` / ``docs_<cat>``, ``weight`` / ``weight_<cat>``). Depends on no
other module of the lens, so building, enrichment, export, figure, metrics and comparison can all use it."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...data.corpus import check_categories
from ...errors import GraphError

__all__: list[str] = []  # private helpers of mri_lens.lenses.mri

GRAPH_KIND = "mri_lens.coactivation_graph"
COMPONENT_GRAPH_KIND = "mri_lens.component_graph"  # components.py
SCHEMA_VERSION = 1


def _check_params(min_weight, top_edges, percentile, alpha) -> None:
    if isinstance(min_weight, bool) or not isinstance(min_weight, (int, float, np.integer, np.floating)) \
            or not math.isfinite(min_weight) or min_weight < 0:
        raise GraphError(f"min_weight must be a number >= 0, got {min_weight!r}")
    if top_edges is not None and (isinstance(top_edges, bool) or not isinstance(top_edges, (int, np.integer))
                                  or top_edges < 1):
        raise GraphError(f"top_edges must be an integer >= 1 or None, got {top_edges!r}")
    if percentile is not None and (not isinstance(percentile, (int, float, np.integer, np.floating))
                                   or not 0 <= percentile <= 100):
        raise GraphError(f"percentile must be a number in [0, 100] or None, got {percentile!r}")
    if not isinstance(alpha, (int, float, np.floating)) or not 0 < alpha < 1:
        raise GraphError(f"alpha must be in (0, 1), got {alpha!r}")


def _graph_categories(g, names: Sequence[str] | str | None) -> list[str]:
    cats = list(g.graph.get("categories", []))
    if names is None:
        return cats
    if isinstance(names, str):
        names = [names]
    check_categories(names, cats, "the graph")
    return list(names)


def _count_arrays(dicts: list, total_key: str, keys: list) -> tuple[np.ndarray, np.ndarray]:
    total = np.array([d.get(total_key, 0) for d in dicts], dtype=np.int64)
    by = np.array([[d.get(k, 0) for k in keys] for d in dicts], dtype=np.int64).reshape(len(dicts), len(keys))
    return total, by


def _node_arrays(g, cats: Sequence[str]) -> tuple[list, np.ndarray, np.ndarray]:
    nodes = list(g.nodes)
    total, by = _count_arrays([g.nodes[n] for n in nodes], "docs", [f"docs_{c}" for c in cats])
    return nodes, total, by


def _edge_arrays(g, cats: Sequence[str]) -> tuple[list, np.ndarray, np.ndarray]:
    edges = list(g.edges(data=True))
    total, by = _count_arrays([d for *_, d in edges], "weight", [f"weight_{c}" for c in cats])
    return [(u, v) for u, v, _ in edges], total, by
