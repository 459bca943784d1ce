"""The MRI page's parts for maps reduced by PCA, SVD or UMAP to any number of components (LLM-MRI's N-D mode): the
component maps, the component graph of neighbouring layers (Spearman correlations, per category), its metrics
(LLM-MRI's included) and the full-vs-reduced evaluation. :func:`write_component_report` writes the page of maps
with more than two components (no grid); :func:`evaluation_section` is shared with the grid page.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from .html import escape
from .page import Page as _Page, df_html as _df_html, scan_label_counts, table as _table

__all__ = ["write_component_report", "evaluation_section", "metrics_sections"]


def _facts(maps, graph, scan, timings: dict[str, float] | None) -> list[tuple[str, Any]]:
    counts = scan_label_counts(scan)
    params = graph.graph.get("params", {})
    rule = ("rho > " if params.get("positive_only") else "|rho| > ") + f"{params.get('threshold')}"
    facts = [("model", scan.meta.get("model_id")), ("units", (scan.meta.get("units") or {}).get("kind", "mlp_post")),
             ("documents", maps.n_docs), ("categories", counts or None),
             ("points", "documents" if maps.mode == "documents" else "neurons"),
             ("reduction", f"{maps.reducer.upper()} to {maps.n_components} components ({maps.scaling} scaling)"),
             ("pooling", maps.pooling), ("seed", maps.seed),
             ("component graph", f"{graph.number_of_nodes()} components, {graph.number_of_edges()} edges "
                                 f"(Spearman {rule}, neighbouring layers)")]
    evr = getattr(maps, "explained_variance_ratio_", None)
    if evr is not None:
        flat = [l for l, r in zip(maps.layers, evr) if float(r.sum()) == 0.0]
        if flat:  # e.g. BERT's [CLS] embedding: the same vector for every document
            facts.append(("constant layers", f"{', '.join(map(str, flat))}: the same values for every document "
                                             "(nothing to reduce; their components are 0)"))
    for k, v in (timings or {}).items():
        facts.append((f"{k} seconds", f"{v:.1f}"))
    return facts


def metrics_sections(page: _Page, graph, cats: Sequence[str]) -> None:
    """Graph metrics: the whole graph, and LLM-MRI's metrics per category (its graphs are one category each)."""
    from ..lenses.mri import graph_metrics

    m = graph_metrics(graph)
    page.parts.append("<h3>Graph metrics</h3>")
    page.parts.append(_df_html(m.summary.reset_index()))
    page.parts.append(_df_html(m.layers))
    projections = getattr(m, "projections", None)
    if projections is not None and len(projections):
        page.parts.append("<h3>Even- and odd-layer projections</h3><p>The graph's nodes of even (odd) layer "
                          "positions joined when they share a neighbour in the layer between (networkx's "
                          "collaboration-weighted bipartite projection, on the undirected graph).</p>")
        page.parts.append(_df_html(projections))
    rows = []
    for c in cats:
        s = graph_metrics(graph, category=c).summary["value"]
        rows.append((c, *(s.get(k) for k in _PER_CATEGORY)))
    if rows:
        page.parts.append("<h3>Per category</h3><p>Each category's own graph (the edges that pass the threshold on "
                          "its documents), as LLM-MRI computes its metrics on one category at a time.</p>")
        page.parts.append(_table(rows, ["category", *_PER_CATEGORY]))


_PER_CATEGORY = ("edges", "density", "degree_mean", "strength_mean", "assortativity_weighted", "center_of_mass",
                 "center_of_strength")


def evaluation_section(page: _Page, evaluation) -> None:
    """Full activations against the reduced ones: a logistic-regression probe per layer on the same splits."""
    if evaluation is None:
        return
    page.parts.append("<h2>What the reduction keeps: full vs reduced probe</h2>")
    page.parts.append("<p>Per layer, a logistic regression (standardised features) on the full pooled activations and "
                      "on the reduced ones, over the same repeated stratified train/test splits; bars show the mean "
                      "over splits and its spread; the delta is full minus reduced.</p>")
    page.parts.append(page.figure(evaluation.figure()))
    table = evaluation.to_pandas()
    main = table[table["metric"] == "balanced_accuracy"] if "balanced_accuracy" in set(table["metric"]) else table
    page.parts.append(_df_html(main))
    page.parts.append("<details><summary>Every metric</summary>" + _df_html(table) + "</details>")


def write_component_report(maps, graph, scan, path: str | os.PathLike, *, title: str = "mri_lens MRI",
                           categories: Sequence[str] | None = None, evaluation=None,
                           timings: dict[str, float] | None = None, links: Sequence[tuple[str, str]] = (),
                           overwrite: bool = False, assets: str | os.PathLike | None = None) -> str:
    """Write the MRI page of maps with more than two components (no grid) as one offline HTML page: facts, the
    component maps, the component graph (all documents and each category), its metrics and the full-vs-reduced
    evaluation. Returns the path written.

    maps: fitted :class:`~mri_lens.lenses.mri.regions.RegionMaps` (documents mode); graph: its
    :func:`~mri_lens.lenses.mri.components.component_graph`; evaluation: an
    :func:`~mri_lens.lenses.mri.evaluation.evaluate_reduction` result or None.
    """
    from ..lenses.mri import component_graph_figure

    page = _Page(title, links)
    cats = list(categories) if categories is not None else list(graph.graph.get("categories") or [])
    page.parts.append(_table(_facts(maps, graph, scan, timings), ["", ""]))
    page.parts.append("<h2>Components per layer</h2>")
    page.parts.append(page.figure(maps.component_figure()))
    page.parts.append("<h2>Component graph</h2>")
    page.parts.append("<p>Nodes are each layer's components (layers left to right); an edge joins a component to one "
                      "of the next layer when the Spearman correlation of their scores over the documents passes "
                      "the threshold. Red: positive, blue: negative correlation; width: |rho|.</p>")
    page.parts.append(page.figure(component_graph_figure(graph)))
    for c in cats:
        page.parts.append(f"<h3>{escape(c)}</h3>")
        page.parts.append(page.figure(component_graph_figure(graph, category=c)))
    metrics_sections(page, graph, cats)
    evaluation_section(page, evaluation)
    return page.write(path, overwrite, assets)
