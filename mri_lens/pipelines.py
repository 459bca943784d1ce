"""End-to-end pipelines, callable from Python and run by the command line: the MRI page of a scan and the demo.

Everything here composes public functions of the stages (scan, lenses, render); the CLI only parses arguments.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .storage.write import claim_dir
from .model.bundled import load_named_model

__all__ = ["demo", "load_named_model", "mri_page"]

MRI_PAGE_KIND = "mri_lens.mri_page"
DEMO_KIND = "mri_lens.demo"


@dataclass
class _MriFit:
    """What the MRI page is drawn from, fitted and saved under ``out`` before the page is written. ``graph`` is the
    co-activation graph of grid maps, or the component graph of maps with more than two components."""

    out: str
    maps: Any
    graph: Any
    probe: Any
    timings: dict[str, float]
    evaluation: Any = None


def mri_page(scan, out: str | os.PathLike, *, grid: int = 10, mode: str = "neurons", seed: int = 0,
             reducer: str = "umap", n_components: int = 2, pooling: str | None = None, scaling: str = "zscore",
             threshold: float = 0.3, positive_only: bool = False,
             min_weight: int = 5, top_edges: int | None = 3, categories: Sequence[str] | None = None,
             n_jobs: int = -1, progress: bool = True, title: str | None = None,
             links: Sequence[tuple[str, str]] = (), overwrite: bool = False,
             assets: str | os.PathLike | None = None, echo: Callable[[str], Any] | None = print,
             site: str | os.PathLike | None = None) -> tuple[str, dict[str, float]]:
    """Region maps + graph + probes of ``scan`` and the MRI page, all under ``out``.

    ``out`` is claimed as an MRI page directory first (refused before any work unless free, empty or an earlier
    MRI page, see :func:`mri_lens.storage.write.claim_dir`); it receives ``maps/``, ``graph.json``, ``graph.graphml``,
    ``graph.gexf`` and ``index.html``. ``reducer``, ``n_components``, ``scaling``, ``pooling`` (default: ``"mean"``
    when the scan kept it, else its first pooling): see :class:`~mri_lens.lenses.mri.RegionMaps`. Two components
    give the grid and the co-activation graph (``top_edges``: keep an edge only if it is among the k heaviest
    out-edges of its source or in-edges of its target; None or 0: keep all); more give the component graph
    (``threshold``, ``positive_only``: :func:`~mri_lens.lenses.mri.component_graph`). A labelled scan also gets the
    full-vs-reduced evaluation (:func:`~mri_lens.lenses.mri.evaluate_reduction`). ``assets``: where the shared
    plotly.js lives (default ``out``). ``site``: a Neuroscope site directory of the same scan: neuron ids link to
    its pages. Returns ``(path of index.html, seconds per stage)``.
    """
    if n_components != 2 and mode != "documents":
        raise ValueError(f"{n_components} components give the component graph, which joins documents' component "
                         "scores: use mode='documents' (--mode documents), or 2 components for the neurons' grid")
    maps_params = dict(grid=grid, mode=mode, seed=seed, reducer=reducer, n_components=n_components,
                       scaling=scaling, pooling=pooling or _default_pooling(scan))
    fit = _fit_mri(scan, out, maps_params, min_weight=min_weight, top_edges=top_edges, threshold=threshold,
                   positive_only=positive_only, n_jobs=n_jobs, progress=progress, overwrite=overwrite, echo=echo)
    return _write_mri(fit, scan, categories=categories, title=title, links=links, overwrite=overwrite,
                      assets=assets, site=site), fit.timings


def _default_pooling(scan) -> str:
    return "mean" if "mean" in scan.poolings else scan.poolings[0]


def _labelled(scan) -> bool:
    return scan.labels is not None and len(set(np.asarray(scan.labels).tolist())) >= 2


def _fit_mri(scan, out: str | os.PathLike, maps_params: dict[str, Any], *, min_weight: int = 5,
             top_edges: int | None = 3, threshold: float = 0.3, positive_only: bool = False, n_jobs: int = -1,
             progress: bool = True, overwrite: bool = False,
             echo: Callable[[str], Any] | None = None) -> _MriFit:
    """Claim ``out``, fit the region maps, the graph (grid or component) and the probes, save the maps and the
    graph files."""
    from .lenses.mri import (RegionMaps, coactivation_graph, component_graph, evaluate_reduction, separability,
                             write_graph)

    out = claim_dir(out, MRI_PAGE_KIND, overwrite=overwrite)
    t0 = time.perf_counter()
    maps = RegionMaps.fit(scan, n_jobs=n_jobs, progress=progress, **maps_params)
    timings = {"region maps": time.perf_counter() - t0}
    t1 = time.perf_counter()
    if maps.has_grid:
        g = coactivation_graph(maps, min_weight=min_weight, top_edges=top_edges or None,
                               enrichment=maps.labels is not None)
    else:
        g = component_graph(maps, threshold=threshold, positive_only=positive_only)
    timings["graph"] = time.perf_counter() - t1
    maps.save(os.path.join(out, "maps"), overwrite=overwrite)
    for ext in ("json", "graphml", "gexf"):
        write_graph(g, os.path.join(out, f"graph.{ext}"), overwrite=overwrite)
    probe = evaluation = None
    if _labelled(scan):
        t2 = time.perf_counter()
        if maps.has_grid:
            probe = separability(maps, scan, seed=maps.seed)
            timings["probe"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        if maps.mode == "documents":  # neurons mode: the probe above compares the regions with the neurons
            evaluation = evaluate_reduction(scan, maps, progress=progress)
            timings["full vs reduced"] = time.perf_counter() - t3
    if echo is not None:
        echo(f"{maps!r}\n" + ", ".join(f"{k}: {v:.1f} s" for k, v in timings.items())
             + f" ({g.number_of_nodes()} nodes, {g.number_of_edges()} edges)")
    return _MriFit(out, maps, g, probe, timings, evaluation)


def _write_mri(fit: _MriFit, scan, *, categories: Sequence[str] | None, title: str | None,
               links: Sequence[tuple[str, str]], overwrite: bool, assets: str | os.PathLike | None,
               site: str | os.PathLike | None) -> str:
    """The MRI page ``fit.out/index.html`` (plotly.js shared under ``assets``, default ``fit.out``)."""
    from .render.mri_components import write_component_report
    from .render.report import write_mri_report

    path = os.path.join(fit.out, "index.html")
    title = title or f"mri_lens MRI: {scan.meta.get('model_id')}"
    assets = fit.out if assets is None else assets
    if not fit.maps.has_grid:
        return write_component_report(fit.maps, fit.graph, scan, path, categories=categories,
                                      evaluation=fit.evaluation, timings=fit.timings, title=title, links=links,
                                      overwrite=overwrite, assets=assets)
    return write_mri_report(fit.maps, fit.graph, scan, path, categories=categories, probe=fit.probe,
                            evaluation=fit.evaluation, timings=fit.timings, title=title, links=links,
                            overwrite=overwrite, assets=assets, site=site)


def _mri_neurons(fit: _MriFit, scan, a: str, b: str) -> list[tuple[int, int]]:
    """The neurons the MRI page names (the strongest of its most enriched regions) as ``(layer, neuron)``."""
    from .lenses.mri import compare_categories, enriched_region_neurons

    regions = compare_categories(fit.maps, fit.graph, a, b).regions
    return [(e.layer, int(n)) for e in enriched_region_neurons(fit.maps, regions, scan) for n in e.strongest]


def _site_of(scan, model, out: str, named: Sequence[tuple[int, int]], **kw) -> str:
    """A Neuroscope site at ``out`` holding (at least) the ``named`` ``(layer, neuron)`` pairs: their layers, and
    in each the union of the named ids (the site takes one id list for all its layers)."""
    from .lenses import neuroscope

    layers = sorted({l for l, _ in named})
    neurons = sorted({n for _, n in named})
    return neuroscope.site(scan, model, out, layers=layers, neurons=neurons, **kw)


def _prose_or_code(text: str) -> str:
    """``"prose"`` when at least half of a code chunk's non-blank lines are comments or docstring lines (a line
    with a triple quote, or between two), else ``"code"``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    inside, prose = False, 0
    for line in lines:
        quotes = line.count('"""') + line.count("'''")
        prose += bool(inside or quotes or line.startswith("#"))
        inside ^= quotes % 2 == 1
    return "prose" if prose >= len(lines) / 2 else "code"


def _labelled_code(n_docs: int) -> Any:
    """:func:`mri_lens.datasets.stdlib_code` chunks labelled ``"prose"`` (mostly comments and docstrings) or
    ``"code"``: two categories the tiny LM tells apart, for the demo's MRI page and report."""
    from . import datasets
    from .data.corpus import Corpus

    c = datasets.stdlib_code(n_docs=n_docs)
    return Corpus(c.texts, [_prose_or_code(t) for t in c.texts],
                  meta={**c.meta, "label": "prose (comments, docstrings) or code"})


REVIEWS = ("positive", "negative")  # the demo's MiniLM categories
CODE = ("prose", "code")  # the demo's tiny-LM categories


def demo(out: str | os.PathLike = "mri_lens_demo", *, limit: int | None = None, batch_size: int = 32,
         device: str | None = None, progress: bool = True, overwrite: bool = False,
         echo: Callable[[str], Any] | None = print) -> dict[str, Any]:
    """The demo, offline: every lens on the models it fits, linked neuron by neuron.

    MiniLM-L6 on drug reviews (positive vs negative): scan, MRI page, report, and a Neuroscope site of the neurons
    those pages name (an encoder: no logit effects). The tiny LM on standard-library code labelled prose
    (comments, docstrings) or code: scan, MRI page, report, the thresholded Neuroscope view of the sequence
    prompts, N2G graphs of the 12 strongest layer-0 neurons, and a site of every neuron; then its shipped SAE
    (layer 2) and transcoder (layer 1) on the same code: a site of the 32 strongest latents of each, the SAE's 4
    strongest with their N2G graphs. Each neuron id on a page links to its site page; each site page of a neuron
    links to the neuron's MRI region.

    Writes under ``out`` (claimed as a demo directory first): ``index.html`` (the MiniLM report, linking every
    part), ``mri/``, ``scan/``, ``reviews_site/``, ``hidden_mri/`` (MiniLM's hidden states at [CLS] reduced by
    PCA, LLM-MRI's setting); ``code_report.html``, ``code_mri/``,
    ``neuroscope_view.html``, ``site/``, ``n2g/``, ``sae_site/``, ``transcoder_site/`` (tiny LM); one shared
    ``assets/`` (plotly.js). ``limit``: only the first N reviews (and N code documents). Returns the paths and
    seconds per stage.
    """
    from .lenses.mri import embedding

    out = claim_dir(out, DEMO_KIND, overwrite=overwrite)
    t0 = time.perf_counter()
    # The map workers start (importing umap-learn, loading its cached numba code) while the model loads and the
    # scan runs, so the maps find them ready (bench/RESULTS.md).
    embedding.warm_up(n_jobs=-1, n_layers=6)
    opts = dict(limit=limit, device=device, progress=progress, overwrite=overwrite, echo=echo)
    reviews = _reviews_demo(out, batch_size=batch_size, **opts)
    t1 = time.perf_counter()
    code = _code_demo(out, **opts)
    t2 = time.perf_counter()
    report = _demo_report(out, reviews, overwrite)
    total = time.perf_counter() - t0
    say = echo or (lambda _msg: None)
    say(f"saved scan: {reviews['scan']}")
    say(f"total {total:.1f} s")
    say(f"report: {os.path.abspath(report)}  (open it in a browser; works offline)")
    return {"out": out, "report": report, **{k: v for k, v in reviews.items() if k not in ("result", "seconds", "reviews_site_dir")},
            **{k: v for k, v in code.items() if k != "seconds"},
            "seconds": {**reviews["seconds"], **code["seconds"], "MiniLM part": t1 - t0, "tiny LM part": t2 - t1,
                        "total": total}}


def _demo_links() -> list[tuple[str, str]]:
    """The top links of the demo report: every part, for both models."""
    return [("MiniLM-L6 on reviews, MRI: region maps, co-activation graph, enriched regions, probe", "mri/index.html"),
            ("MiniLM-L6 on reviews, Neuroscope site: the neurons the report and the MRI page name",
             "reviews_site/index.html"),
            ("MiniLM-L6 hidden states at [CLS], as LLM-MRI reads them: PCA to 10 components per layer, the component "
             "graph, full vs reduced probe", "hidden_mri/index.html"),
            ("tiny LM on standard-library code (prose vs code): report", "code_report.html"),
            ("tiny LM on code, MRI: region maps, co-activation graph, enriched regions", "code_mri/index.html"),
            ("tiny LM, Neuroscope view of in-context sequence prompts", "neuroscope_view.html"),
            ("tiny LM on code, Neuroscope site: every neuron, searchable", "site/index.html"),
            ("tiny LM, N2G graphs: 12 layer-0 neurons explained as token patterns", "n2g/index.html"),
            ("tiny LM on code, Neuroscope site of SAE latents (layer 2), with N2G graphs of the 4 strongest",
             "sae_site/index.html"),
            ("tiny LM on code, Neuroscope site of transcoder latents (layer 1)", "transcoder_site/index.html")]


def _demo_report(out: str, reviews: dict[str, Any], overwrite: bool) -> str:
    """The demo's top page: the MiniLM report, its neuron ids linked to the MiniLM site, every part linked."""
    from .render.report import write_scan_report

    return write_scan_report(reviews["result"], os.path.join(out, "index.html"),
                             title="mri_lens demo: MiniLM-L6 on drug reviews (positive vs negative)",
                             categories=REVIEWS, links=_demo_links(), overwrite=overwrite, assets=out,
                             site=reviews["reviews_site_dir"])


def _reviews_demo(out: str, *, limit: int | None, batch_size: int, device: str | None, progress: bool,
                  overwrite: bool, echo: Callable[[str], Any] | None) -> dict[str, Any]:
    """MiniLM-L6 on drug reviews: scan, MRI fit, the site of the neurons the MRI page and the report name, the
    MRI page (linked to the site), the saved scan."""
    from . import datasets, models
    from .render.report import report_neurons
    from .lenses.mri import neuron_links
    from .scanning.run import scan

    say = echo or (lambda _msg: None)
    t0 = time.perf_counter()
    corpus = datasets.drug_reviews(label="rating", categories=list(REVIEWS))
    if limit:
        corpus = corpus.subset(range(min(limit, len(corpus))))
    say(f"corpus: {corpus!r}")
    # the plain Hugging Face model and the "hf" capture backend: same activations as the TL bridge (tested), faster
    model = models.minilm(device=device, backend="hf")
    result = scan(model, corpus, batch_size=batch_size, pooling=("mean", "max"), progress=progress)
    t_scan = time.perf_counter() - t0
    say(f"{result!r}\nscan: {t_scan:.1f} s")
    fit = _fit_mri(result, os.path.join(out, "mri"), dict(grid=10, mode="neurons", seed=0), min_weight=5,
                   top_edges=3, progress=progress, overwrite=overwrite, echo=echo)
    say(f"MRI pipeline (scan + region maps + graph): {t_scan + fit.timings['region maps'] + fit.timings['graph']:.1f}"
        f" s (scan {t_scan:.1f}, maps {fit.timings['region maps']:.1f}, graph {fit.timings['graph']:.2f})")
    t1 = time.perf_counter()
    named = report_neurons(result, categories=REVIEWS) + _mri_neurons(fit, result, *REVIEWS)
    site_dir = os.path.join(out, "reviews_site")
    site = _site_of(result, model, site_dir, named, links=neuron_links(fit.maps, "../mri/index.html"),
                    title="mri_lens demo: MiniLM-L6 neurons named by the reviews report and MRI page",
                    overwrite=overwrite, progress=progress)
    t_site = time.perf_counter() - t1
    say(f"MiniLM neuron site: {t_site:.1f} s")
    mri = _write_mri(fit, result, categories=REVIEWS, links=[("back to the demo report", "../index.html")],
                     title="mri_lens demo: MRI of MiniLM-L6 on drug reviews (positive vs negative)",
                     overwrite=overwrite, assets=out, site=site_dir)
    scan_dir = result.save(os.path.join(out, "scan"), overwrite=overwrite)
    hidden = _hidden_states_mri(model, corpus, out, batch_size=batch_size, progress=progress, overwrite=overwrite,
                                echo=echo)
    return {"result": result, "mri": mri, "scan": scan_dir, "reviews_site": site, "reviews_site_dir": site_dir,
            "hidden_mri": hidden["page"],
            "seconds": {"scan": t_scan, **fit.timings, "MiniLM site": t_site,
                        "MiniLM hidden states MRI": hidden["seconds"]}}


def _hidden_states_mri(model: Any, corpus: Any, out: str, *, batch_size: int, progress: bool, overwrite: bool,
                       echo: Callable[[str], Any] | None) -> dict[str, Any]:
    """LLM-MRI's own setting on the reviews: the hidden states (embeddings + every block's output) at [CLS], PCA to
    10 components per layer, the component graph and the full-vs-reduced probe (``hidden_mri/``)."""
    from .scanning.run import scan

    t0 = time.perf_counter()
    hidden = scan(model, corpus, units="hidden_states", pooling=("first",), batch_size=batch_size,
                  progress=progress)
    fit = _fit_mri(hidden, os.path.join(out, "hidden_mri"),
                   dict(mode="documents", reducer="pca", n_components=10, pooling="first", seed=0),
                   progress=progress, overwrite=overwrite, echo=echo)
    page = _write_mri(fit, hidden, categories=REVIEWS, links=[("back to the demo report", "../index.html")],
                      title="mri_lens demo: MiniLM-L6 hidden states at [CLS] (LLM-MRI's setting): PCA to 10 "
                            "components, component graph, full vs reduced", overwrite=overwrite, assets=out,
                      site=None)
    return {"page": page, "seconds": time.perf_counter() - t0}


def _code_demo(out: str, *, limit: int | None, device: str | None, progress: bool, overwrite: bool,
               echo: Callable[[str], Any] | None) -> dict[str, Any]:
    """The tiny LM on labelled standard-library code: scan, view, MRI fit, N2G graphs, the site of every neuron,
    then the pages that link into it (view, MRI page, report)."""
    from . import models
    from .lenses import neuroscope
    from .lenses.mri import neuron_links
    from .lenses.n2g import demo_section
    from .render.report import write_scan_report
    from .scanning.run import scan

    say = echo or (lambda _msg: None)
    t0 = time.perf_counter()
    tiny = models.tiny_lm(device=device)
    view = neuroscope.view(tiny, neuroscope.prompts.sequence_prompts(), hi=3.0, lo=0.0, select="hi")
    corpus = _labelled_code(limit or 200)
    code = scan(tiny, corpus, overflow="windows", progress=progress)
    t_scan = time.perf_counter() - t0
    fit = _fit_mri(code, os.path.join(out, "code_mri"), dict(grid=10, mode="neurons", seed=0), min_weight=5,
                   top_edges=3, progress=progress, overwrite=overwrite, echo=echo)
    t1 = time.perf_counter()
    layer0 = code.stats.max[code.layer_index(0)]
    strongest = sorted(int(n) for n in np.argsort(-layer0, kind="stable")[:12])  # the 12 strongest layer-0 neurons
    n2g_graphs, _ = demo_section(tiny, code, out, strongest)  # their N2G graphs and the n2g/ page
    t2 = time.perf_counter()
    # every neuron of the model: each id on the tiny-LM pages (view, MRI regions, report, N2G) has its page
    site_dir = os.path.join(out, "site")
    site = neuroscope.site(code, tiny, site_dir, links=neuron_links(fit.maps, "../code_mri/index.html"),
                           title="mri_lens demo: every tiny-LM neuron on standard-library code", n2g=n2g_graphs,
                           overwrite=overwrite, progress=progress)
    latents = _latent_sites(tiny, corpus, out, progress=progress, overwrite=overwrite)
    t3 = time.perf_counter()
    view.save_html(os.path.join(out, "neuroscope_view.html"), summary=True,
                   title="mri_lens demo: tiny LM, thresholded view of in-context sequence prompts",
                   overwrite=overwrite, assets=out, site=site_dir)
    back = [("back to the demo report", "../index.html")]
    mri = _write_mri(fit, code, categories=CODE, links=back, overwrite=overwrite, assets=out, site=site_dir,
                     title="mri_lens demo: MRI of the tiny LM on standard-library code (prose vs code)")
    report = write_scan_report(code, os.path.join(out, "code_report.html"), categories=CODE,
                               title="mri_lens demo: the tiny LM on standard-library code (prose vs code)",
                               links=[("back to the demo report", "index.html"),
                                      ("its MRI page", "code_mri/index.html"), ("its neuron site", "site/index.html")],
                               overwrite=overwrite, assets=out, site=site_dir)
    seconds = {"tiny LM scan and view": t_scan, "tiny LM MRI": t1 - t_scan - t0, "N2G": t2 - t1,
               "tiny LM site": t3 - t2 - latents["seconds"], "tiny LM latent sites": latents["seconds"],
               "tiny LM pages": time.perf_counter() - t3}
    say("tiny LM: " + ", ".join(f"{k.removeprefix('tiny LM ')} {v:.1f} s" for k, v in seconds.items()))
    return {"site": site, "sae_site": latents["sae_site"], "transcoder_site": latents["transcoder_site"],
            "code_mri": mri, "code_report": report, "seconds": seconds}


def _latent_sites(tiny: Any, corpus: Any, out: str, *, progress: bool, overwrite: bool, n_site: int = 32,
                  n_n2g: int = 4) -> dict[str, Any]:
    """The shipped SAE (layer 2) and transcoder (layer 1) latents of the tiny LM on the demo's code corpus: one
    scan each, a Neuroscope site of the ``n_site`` latents with the highest max (``sae_site/``,
    ``transcoder_site/``), the SAE's ``n_n2g`` strongest with their N2G graphs on their pages."""
    from . import models
    from .model import units as unit_kinds
    from .lenses import neuroscope
    from .lenses.n2g import explain_layer
    from .scanning.run import scan

    t0 = time.perf_counter()
    sites: dict[str, Any] = {}
    for name, layer, units in (("sae", 2, unit_kinds.sae({2: models.tiny_sae_dir()})),
                               ("transcoder", 1, unit_kinds.transcoder({1: models.tiny_transcoder_dir()}))):
        latents = scan(tiny, corpus, overflow="windows", units=units, progress=progress)
        order = np.argsort(-latents.stats.max[latents.layer_index(layer)], kind="stable")  # [d_sae], strongest first
        graphs = {}
        if name == "sae":  # N2G explains SAE latents through the SAE's encoder
            fitted = explain_layer(tiny, latents, layer, sorted(int(n) for n in order[:n_n2g]), progress=False)
            graphs = {(layer, n): g for n, g in fitted.items()}
        sites[f"{name}_site"] = neuroscope.site(
            latents, tiny, os.path.join(out, f"{name}_site"), neurons=sorted(int(n) for n in order[:n_site]),
            title=f"mri_lens demo: the {n_site} strongest tiny-LM {name} latents (layer {layer}) on "
                  "standard-library code", n2g=graphs or None, overwrite=overwrite, progress=progress)
    return {**sites, "seconds": time.perf_counter() - t0}
