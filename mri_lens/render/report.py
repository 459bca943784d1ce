"""Offline HTML reports built from a scan and its lenses: the scan report (statistics per layer, category
differences) and the MRI page (region maps, co-activation graph, metrics, enrichment, probe).

Every token and label is escaped by the one renderer (:mod:`mri_lens.render.html`); plotly.js is inlined once per
standalone page, or shared by every page of an output directory (``assets=``), so pages open with no network.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..errors import CategoryError
from ..lenses.mri import category_difference_figure, category_differences
from .html import escape
from .mri_components import evaluation_section
from .page import Html as _Html, Page as _Page, df_html as _df_html, fmt as _fmt, scan_label_counts, table as _table
from .links import SiteLinks, neuron_link_html, region_anchor, site_links

__all__ = ["write_scan_report", "write_mri_report", "scan_label_counts", "report_neurons"]


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(str(n)) for n in names)


def _report_categories(scan, categories: Sequence[str]) -> tuple[str, str]:
    """The two categories a scan report contrasts, checked: labels exist, both are known and different."""
    cats = [categories] if isinstance(categories, str) else [str(c) for c in categories]
    if scan.labels is None:
        raise CategoryError(f"categories {_names(cats)} were given but the scan has no labels (scan a corpus with a "
                        "label column to compare categories)")
    names = list(scan.label_names)
    unknown = [c for c in cats if c not in names]
    if unknown:
        raise CategoryError(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {_names(unknown)}; the scan's "
                        f"categories are {_names(names)}")
    if len(cats) != 2 or cats[0] == cats[1]:
        raise CategoryError(f"the report compares two different categories, got {len(cats)} ({_names(cats)}); give two "
                        f"of {_names(names)}")
    return cats[0], cats[1]


def _neuron(site: SiteLinks | None, layer: int, neuron: int) -> _Html:
    """A neuron's id cell, linked to its page when ``site`` has one."""
    return _Html(neuron_link_html(site, layer, neuron))


def write_scan_report(scan, path: str | os.PathLike, *, title: str = "mri_lens report",
                      categories: tuple[str, str] | None = None, top_neurons: int = 8,
                      links: Sequence[tuple[str, str]] = (), overwrite: bool = False,
                      assets: str | os.PathLike | None = None, max_categories: int = 12,
                      site: SiteLinks | str | os.PathLike | None = None) -> str:
    """Write a self-contained HTML page: run facts, per-layer statistics, category differences with the most
    different neurons and their top examples; ``links`` are ``(text, relative href)`` pairs listed at the top
    (:func:`mri_lens.render.html.check_link_url`: ``ValueError`` for a ``javascript:``-like URL). ``site``: a
    Neuroscope site of the same scan (its directory, or :class:`~mri_lens.render.links.SiteLinks` relative to this
    page): each neuron id links to its page there when the site has one. Returns the path written.

    Category differences on a labelled scan: ``categories=(a, b)`` contrasts those two (unknown names, a number
    other than two, or categories of an unlabelled scan raise :class:`~mri_lens.errors.CategoryError` naming the
    scan's categories); without it, a scan with two categories contrasts them, and a scan with more compares each
    category against all the other documents (the ``max_categories`` largest with at least two documents, and two
    others; the page says which were left out), never an arbitrary pair.
    """
    if categories is not None:
        categories = _report_categories(scan, categories)
    if isinstance(max_categories, bool) or not isinstance(max_categories, (int, np.integer)) or max_categories < 1:
        raise ValueError(f"max_categories must be a positive integer, got {max_categories!r}")
    page = _Page(title, links, site_links(site, path))
    page.parts.append(_table(_scan_facts(scan), ["", ""]))
    _layer_section(page, scan)
    pair = _report_pair(scan, categories)
    if pair is not None:
        _pair_section(page, scan, pair[0], pair[1], top_neurons)
    elif scan.labels is not None and len(scan.label_names) > 2:
        _each_vs_rest_section(page, scan, top_neurons, max_categories)
    return page.write(path, overwrite, assets)


def _report_pair(scan, categories: tuple[str, str] | None) -> tuple[str, str] | None:
    """The two categories the report contrasts: the given ones, or those of a two-category scan."""
    if categories is not None:
        return categories
    if scan.labels is not None and len(scan.label_names) == 2:
        return scan.label_names[0], scan.label_names[1]
    return None


def report_neurons(scan, *, categories: tuple[str, str] | None = None, top_neurons: int = 8,
                   max_categories: int = 12) -> list[tuple[int, int]]:
    """The neurons :func:`write_scan_report` names with the same arguments, as ``(layer, neuron)`` pairs in page
    order (a Neuroscope site of them makes every neuron id of the report a link)."""
    if categories is not None:
        categories = _report_categories(scan, categories)
    pair = _report_pair(scan, categories)
    if pair is not None:
        best = _largest_d(category_differences(scan, pair[0], pair[1]), top_neurons)
        return [(int(r["layer"]), int(r["neuron"])) for _, r in best.iterrows()]
    if scan.labels is None or len(scan.label_names) <= 2:
        return []
    return [(int(r["layer"]), int(r["neuron"])) for _, best in _each_vs_rest(scan, top_neurons, max_categories)[0]
            for _, r in best.iterrows()]


def _scan_facts(scan) -> list[tuple[str, Any]]:
    m = scan.meta
    return [("model", m.get("model_id")), ("architecture", m.get("architecture")), ("documents", scan.n_docs),
            ("tokens counted", scan.stats.count), ("layers", scan.layers), ("d_mlp", scan.d_mlp),
            ("hook", m.get("hook_template")), ("prepend_bos", m.get("prepend_bos")),
            ("BOS in statistics", not m.get("bos_excluded_from_stats")), ("padding side", m.get("padding_side")),
            ("max_length", m.get("max_length")), ("texts truncated", m.get("n_truncated")),
            ("labels", scan.label_names), ("scan seconds", m.get("seconds")), ("versions", m.get("versions"))]


def _layer_section(page: _Page, scan) -> None:
    page.parts.append("<h2>Per-layer neuron statistics</h2>")
    page.parts.append(page.figure(scan.figure()))
    layer_rows = [(l, f"{scan.stats.mean[i].mean():.4f}", f"{scan.stats.std[i].mean():.4f}",
                   f"{np.median(scan.stats.max[i]):.3f}", f"{scan.stats.frac_positive[i].mean():.3f}",
                   int((scan.stats.max[i] <= 0).sum()))
                  for i, l in enumerate(scan.layers)]
    page.parts.append(_table(layer_rows, ["layer", "mean act", "mean std", "median neuron max",
                                          "mean frac > 0", "never-positive neurons"]))


def _top_tokens(scan, layer: int, neuron: int, k: int = 5) -> str:
    return ", ".join(repr(t) for t in scan.top_examples(layer, neuron, k=k).max_tokens())


def _largest_d(df, k: int):
    """The ``k`` rows of a :func:`category_differences` table with the largest ``|Cohen's d|``."""
    return df.reindex(df["cohens_d"].abs().sort_values(ascending=False).index).head(k)


def _pair_section(page: _Page, scan, a: str, b: str, top_neurons: int) -> None:
    """Categories ``a`` and ``b`` contrasted: Welch's t-test per neuron, the most different neurons."""
    parts = page.parts
    df = category_differences(scan, a, b)
    parts.append(f"<h2>Category differences: {escape(a)} vs {escape(b)}</h2>")
    parts.append(f"<p>Pooled mean activation per document; Welch's t-test per neuron, Benjamini-Hochberg over "
                 f"all {len(df)} neurons. Documents: {escape(str(scan_label_counts(scan)))}.</p>")
    parts.append(page.figure(category_difference_figure(df, a, b)))
    best = _largest_d(df, top_neurons)
    rows = [(_neuron(page.site, int(r["layer"]), int(r["neuron"])), r[f"mean_{a}"], r[f"mean_{b}"], r["cohens_d"],
             r["q_value"], _top_tokens(scan, int(r["layer"]), int(r["neuron"]))) for _, r in best.iterrows()]
    parts.append(_table(rows, ["neuron", f"mean {a}", f"mean {b}", "Cohen's d", "q", "top tokens"]))
    parts.append("<h3>Top examples of the most different neurons</h3>")
    for _, r in best.head(3).iterrows():
        l, n = int(r["layer"]), int(r["neuron"])
        parts.append(f"<h4>{neuron_link_html(page.site, l, n)}</h4>")
        parts.append(scan.top_examples(l, n, k=5)._repr_html_())


def _each_vs_rest(scan, top_neurons: int, max_categories: int):
    """``([(category, its most different rows)], categories left out, counts)``: every category that can be
    tested (the largest ``max_categories``) against all other documents."""
    counts = scan_label_counts(scan)
    testable = [c for c, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n >= 2 and scan.n_docs - n >= 2]
    shown, left = testable[:max_categories], [c for c in counts if c not in testable[:max_categories]]
    per = max(1, min(top_neurons, 3))
    return [(c, _largest_d(category_differences(scan, c), per)) for c in shown], left, counts


def _each_vs_rest_section(page: _Page, scan, top_neurons: int, max_categories: int) -> None:
    """Every category (the largest ``max_categories`` that can be tested) against all other documents."""
    compared, left, counts = _each_vs_rest(scan, top_neurons, max_categories)
    parts = page.parts
    parts.append("<h2>Category differences: each category against the rest</h2>")
    parts.append(f"<p>The scan has {len(counts)} categories, so each is compared with all other documents "
                 f"(pooled mean activation per document, Welch's t-test per neuron, Benjamini-Hochberg over all "
                 f"neurons, per category). For two chosen categories, pass <code>categories=(a, b)</code> "
                 f"(<code>--categories A B</code> on the command line). Documents: "
                 f"{escape(str(counts))}.</p>")
    if left:
        parts.append(f"<p>Not compared ({len(left)}; fewer than two documents, or beyond the "
                     f"{max_categories} largest): {escape(_names(left))}.</p>")
    if not compared:
        parts.append("<p>No category has two documents and two others: nothing to compare.</p>")
        return
    rows = [(c, counts[c], _neuron(page.site, int(r["layer"]), int(r["neuron"])), r[f"mean_{c}"], r["mean_rest"],
             r["cohens_d"], r["q_value"], _top_tokens(scan, int(r["layer"]), int(r["neuron"])))
            for c, best in compared for _, r in best.iterrows()]
    parts.append(_table(rows, ["category", "documents", "neuron", "mean in it", "mean in the rest", "Cohen's d", "q",
                               "top tokens"]))


def write_mri_report(maps, graph, scan, path: str | os.PathLike, *, title: str = "mri_lens MRI",
                     categories: Sequence[str] | None = None, probe=None, evaluation=None,
                     timings: dict[str, float] | None = None, top_rows: int = 12, links: Sequence[tuple[str, str]] = (), overwrite: bool = False,
                     assets: str | os.PathLike | None = None, site: SiteLinks | str | os.PathLike | None = None) -> str:
    """Write the MRI lens as one offline HTML page: region images per category for every layer, the layer with the
    largest category contrast in detail (region images, neuron scatter), the co-activation graph, graph metrics,
    enriched regions and edges, and the separability probe. Returns the path written.

    Parameters
    ----------
    maps: fitted :class:`~mri_lens.lenses.mri.regions.RegionMaps`; graph: its
        :func:`~mri_lens.lenses.mri.coactivation.coactivation_graph`.
    categories: the categories to contrast (default: the first two label names); one category, or an
        unlabelled scan, gives the maps and the graph without the comparison.
    probe: a :func:`~mri_lens.lenses.mri.probe.separability` table (computed here when None and the scan is labelled).
    evaluation: a full-vs-reduced :func:`~mri_lens.lenses.mri.evaluation.evaluate_reduction` result, shown when given.
    timings: seconds per stage, shown in the facts table.
    links: ``(text, href)`` pairs listed at the top; relative or http(s)/file URLs only (:func:`mri_lens.render.html.check_link_url`).
    overwrite: replace a file at ``path`` that is not an mri_lens page (default: refuse, see
        :func:`mri_lens.storage.write.check_save_target`).
    assets: a directory (the output directory of several pages): plotly.js is written there once as
        ``assets/plotly-<version>.min.js`` and referenced relatively; default: inlined into this page.
    site: a Neuroscope site of the same scan (its directory, or :class:`~mri_lens.render.links.SiteLinks`
        relative to this page): each neuron id links to its page there when the site has one.

    In neurons mode every region that holds neurons is listed with them, under the anchor
    ``region-L{layer}-R{region}`` (:func:`mri_lens.render.links.region_anchor`), where the neuron pages of
    :func:`mri_lens.lenses.mri.neuron_links` point.
    """
    page = _Page(title, links, site_links(site, path))
    names = list(maps.label_names or [])
    cats = list(categories) if categories is not None else names[:2]
    counts = scan_label_counts(scan)
    page.parts.append(_table(_mri_facts(maps, graph, scan, counts, timings), ["", ""]))
    _maps_section(page, maps, cats)
    _graph_section(page, graph, cats)
    if len(cats) >= 2:
        _comparison_section(page, maps, graph, scan, cats, top_rows)
    if maps.labels is not None and len(counts) >= 2:
        _probe_section(page, maps, scan, probe)
    evaluation_section(page, evaluation)
    _regions_section(page, maps, scan)
    return page.write(path, overwrite, assets)


def _mri_facts(maps, graph, scan, counts: dict[str, int], timings: dict[str, float] | None) -> list[tuple[str, Any]]:
    """The facts table of the MRI page: model, corpus, map parameters, graph size and trimming, timings."""
    facts = [("model", scan.meta.get("model_id")), ("documents", maps.n_docs), ("categories", counts or None),
             ("mode", f"{maps.mode} (points are {'neurons' if maps.mode == 'neurons' else 'documents'})"),
             ("reduction", f"{getattr(maps, 'reducer', 'umap').upper()} to 2 components"),
             ("grid", f"{maps.grid} x {maps.grid} = {maps.n_regions} regions per layer ({maps.binning} bins)"),
             ("activation rule", f"{maps.rule} {maps.threshold_:g} on the region's mean neuron z-score"
              if maps.mode == "neurons" else "the document's own cell"),
             ("pooling", maps.pooling), ("aligned across layers", maps.aligned), ("seed", maps.seed),
             ("graph", f"{graph.number_of_nodes()} regions, {graph.number_of_edges()} edges kept of "
                       f"{graph.graph.get('n_edges_untrimmed', '?')} (trimming: "
                       + ", ".join(f"{k} {v}" for k, v in graph.graph.get("params", {}).items()
                                   if k != "categories" and v is not None) + ")")]
    for k, v in (timings or {}).items():
        facts.append((f"{k} seconds", f"{v:.1f}"))
    return facts


def _maps_section(page: _Page, maps, cats: list[str]) -> None:
    """Region images of every layer, then the layer with the largest category contrast in detail."""
    parts, add = page.parts, page.figure
    two = len(cats) >= 2
    parts.append("<h2>Region images, all layers</h2>")
    what = ("a group of neurons with similar activation patterns over the corpus" if maps.mode == "neurons" else
            "the documents that land in that cell of the layer's map")
    parts.append("<p>Each square is one layer's map cut into regions (rows and columns of the grid); a region is "
                 + what + ". " +
                 ("Colour: log-odds that a document activating the region is " + escape(cats[0]) + " rather "
                  "than " + escape(cats[1]) + " (red: " + escape(cats[0]) + ", blue: " +
                  escape(cats[1]) + "); blank regions hold no points.</p>" if two else
                  "Colour: fraction of documents activating the region.</p>"))
    if two:
        parts.append(add(maps.small_multiples(cats[:2], value="log-odds")))
    parts.append(add(maps.small_multiples(cats or None, value="fraction")))

    best = maps.layers[-1]
    if two:
        contrast = [float(np.nanmax(np.abs(maps.log_odds(l, cats[0], cats[1])))) for l in maps.layers]
        best = maps.layers[int(np.argmax(contrast))]
    parts.append(f"<h2>Layer {best} in detail</h2>")
    parts.append(add(maps.figure(best, cats or None)))
    parts.append(add(maps.scatter(best, cats[0] if cats else None, cats[1] if two else None)))


def _graph_section(page: _Page, graph, cats: list[str]) -> None:
    """The co-activation graph's figure and metrics."""
    from ..lenses.mri import graph_figure, graph_metrics

    parts = page.parts
    parts.append("<h2>Co-activation graph</h2>")
    parts.append("<p>Nodes are regions (one column per layer, regions in grid order); an edge joins a region of one "
                 "layer to a region of the next, weighted by the number of documents activating both. Colours "
                 "mark edges and regions enriched for a category (one-vs-rest Fisher's exact test, "
                 "Benjamini-Hochberg q &lt; 0.05); widths are relative to the heaviest edge.</p>")
    parts.append(page.figure(graph_figure(graph, highlight=cats or None)))
    metrics = graph_metrics(graph)
    parts.append("<h3>Graph metrics</h3>")
    parts.append(_df_html(metrics.summary.reset_index()))
    parts.append(_df_html(metrics.layers))
    if metrics.category_pairs is not None and len(metrics.category_pairs):
        parts.append(_df_html(metrics.category_pairs))


def _comparison_section(page: _Page, maps, graph, scan, cats: list[str], top_rows: int) -> None:
    """The first two categories compared: enriched regions and edges, and the neurons of the most enriched
    regions (neurons mode)."""
    from ..lenses.mri import compare_categories, enriched_region_neurons

    parts = page.parts
    cmp = compare_categories(maps, graph, cats[0], cats[1])
    parts.append(f"<h2>{escape(cats[0])} vs {escape(cats[1])}: enriched regions and edges</h2>")
    parts.append("<p>" + escape(", ".join(f"{k}: {_fmt(v)}" for k, v in cmp.summary.items())) + "</p>")
    parts.append(page.figure(cmp.figure()))
    for name, df in (("regions", cmp.regions), ("edges", cmp.edges)):
        col = "q_value" if "q_value" in df.columns else df.columns[-1]
        parts.append(f"<h3>Most enriched {name}</h3>")
        parts.append(_df_html(df.sort_values(col, kind="stable"), top_rows))
    if maps.mode != "neurons":
        return
    parts.append("<h3>Neurons of the most enriched regions</h3>")
    rows = []
    for e in enriched_region_neurons(maps, cmp.regions, scan):
        toks = "; ".join(
            neuron_link_html(page.site, e.layer, int(n)) + ": " + escape(", ".join(
                repr(t) for t in scan.top_examples(e.layer, int(n), k=3).max_tokens()))
            for n in e.strongest)
        region = f"<a href='#{region_anchor(e.layer, e.region)}'>{e.region}</a>"
        rows.append((e.layer, _Html(region), e.n_neurons, _Html(toks)))
    parts.append(_table(rows, ["layer", "region", "neurons", "strongest neurons: their top tokens"]))


def _regions_section(page: _Page, maps, scan) -> None:
    """Every region that holds neurons (neurons mode), one folded table per layer: its anchor, position and
    neurons (strongest maximum activation first), each linked to its page when the site has one."""
    if maps.mode != "neurons":
        return
    page.parts.append("<h2>Regions and their neurons</h2><p>Every region of every layer with the neurons it holds, "
                      "strongest (highest maximum activation) first.</p>")
    for l in maps.layers:
        li = scan.layer_index(l)
        rows = []
        for r in np.flatnonzero(maps.region_sizes(l)):
            neurons = maps.region_neurons(l, int(r))
            neurons = neurons[np.argsort(-scan.stats.max[li, neurons], kind="stable")]
            ids = ", ".join(neuron_link_html(page.site, l, int(n)) for n in neurons)
            rows.append(f"<tr id='{region_anchor(l, int(r))}'><td>{int(r)}</td><td>{int(r) // maps.grid}, "
                        f"{int(r) % maps.grid}</td><td>{len(neurons)}</td><td class='ids'>{ids}</td></tr>")
        page.parts.append(f"<details class='regions'><summary>Layer {l}: {len(rows)} regions</summary><table><thead>"
                          "<tr><th>region</th><th>row, col</th><th>neurons</th><th>ids</th></tr></thead><tbody>"
                          + "".join(rows) + "</tbody></table></details>")
    # a link to a region opens its layer's folded table (on load and on every later jump)
    page.parts.append("<script>function openRegion(){var e=location.hash&&document.getElementById("
                      "decodeURIComponent(location.hash.slice(1)));var d=e&&e.closest('details');if(d){d.open=true;"
                      "e.scrollIntoView();}}window.addEventListener('hashchange',openRegion);openRegion();</script>")


def _probe_section(page: _Page, maps, scan, probe) -> None:
    """The separability probe (computed here when ``probe`` is None)."""
    from ..lenses.mri import separability

    if probe is None:
        probe = separability(maps, scan)
    page.parts.append("<h2>How much the map keeps: separability probe</h2>")
    page.parts.append("<p>Cross-validated logistic regression per layer (balanced accuracy, folds fitted inside the "
                      "cross-validation) on the region activations against the same layer's raw pooled neurons.</p>")
    page.parts.append(_df_html(probe))
