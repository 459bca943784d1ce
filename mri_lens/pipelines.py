"""End-to-end pipelines, callable from Python and run by the command line: the MRI page of a scan and the demo.

Everything here composes public functions of the stages (scan, lenses, render); the CLI only parses arguments.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

from .storage.write import claim_dir
from .model.bundled import load_named_model

__all__ = ["demo", "load_named_model", "mri_page"]

MRI_PAGE_KIND = "mri_lens.mri_page"
DEMO_KIND = "mri_lens.demo"


def mri_page(scan, out: str | os.PathLike, *, grid: int = 10, mode: str = "neurons", seed: int = 0,
             min_weight: int = 5, top_edges: int | None = 3, categories: Sequence[str] | None = None,
             n_jobs: int = -1, progress: bool = True, title: str | None = None,
             links: Sequence[tuple[str, str]] = (), overwrite: bool = False,
             assets: str | os.PathLike | None = None, echo: Callable[[str], Any] | None = print
             ) -> tuple[str, dict[str, float]]:
    """Region maps + co-activation graph + probe of ``scan`` and the MRI page, all under ``out``.

    ``out`` is claimed as an MRI page directory first (refused before any work unless free, empty or an earlier
    MRI page, see :func:`mri_lens.storage.write.claim_dir`); it receives ``maps/``, ``graph.json``, ``graph.graphml``,
    ``graph.gexf`` and ``index.html``. ``top_edges``: keep an edge only if it is among the k heaviest out-edges
    of its source or in-edges of its target (None or 0: keep all). ``assets``: where the shared plotly.js lives
    (default ``out``). Returns ``(path of index.html, seconds per stage)``.
    """
    from .lenses.mri import RegionMaps, coactivation_graph, separability, write_graph
    from .render.report import write_mri_report

    out = claim_dir(out, MRI_PAGE_KIND, overwrite=overwrite)
    t0 = time.perf_counter()
    maps = RegionMaps.fit(scan, grid=grid, mode=mode, seed=seed, n_jobs=n_jobs, progress=progress)
    t_maps = time.perf_counter() - t0
    t1 = time.perf_counter()
    g = coactivation_graph(maps, min_weight=min_weight, top_edges=top_edges or None,
                           enrichment=maps.labels is not None)
    t_graph = time.perf_counter() - t1
    maps.save(os.path.join(out, "maps"), overwrite=overwrite)
    for ext in ("json", "graphml", "gexf"):
        write_graph(g, os.path.join(out, f"graph.{ext}"), overwrite=overwrite)
    t2 = time.perf_counter()
    probe = separability(maps, scan, seed=seed) if scan.labels is not None and len(scan.label_names) >= 2 else None
    t_probe = time.perf_counter() - t2
    timings = {"region maps": t_maps, "graph": t_graph}
    if probe is not None:
        timings["probe"] = t_probe
    report = write_mri_report(maps, g, scan, os.path.join(out, "index.html"), categories=categories, probe=probe,
                              timings=timings, title=title or f"mri_lens MRI: {scan.meta.get('model_id')}",
                              links=links, overwrite=overwrite, assets=out if assets is None else assets)
    if echo is not None:
        echo(f"{maps!r}\nregion maps: {t_maps:.1f} s, graph: {t_graph:.2f} s ({g.number_of_nodes()} regions, "
             f"{g.number_of_edges()} edges)" + (f", probe: {t_probe:.1f} s" if probe is not None else ""))
    return report, timings


def demo(out: str | os.PathLike = "mri_lens_demo", *, limit: int | None = None, batch_size: int = 32,
         device: str | None = None, progress: bool = True, overwrite: bool = False,
         echo: Callable[[str], Any] | None = print) -> dict[str, Any]:
    """The demo, offline: MiniLM-L6 on drug reviews (positive vs negative): scan, MRI lens (region maps, graph,
    probe), the report; then the Neuroscope and N2G lenses on the tiny LM: the thresholded view of the sequence
    prompts and a small neuron site whose pages show each neuron's N2G graph and scores.

    Writes under ``out`` (claimed as a demo directory first): ``index.html`` (the report, linking the rest),
    ``mri/``, ``scan/``, ``neuroscope_view.html``, ``site/``, ``n2g/`` and one shared ``assets/`` (plotly.js).
    ``limit``: only the first N reviews (and N code documents). Returns the paths and seconds per stage.
    """
    from . import datasets, models
    from .lenses.mri import embedding
    from .lenses.n2g import demo_section
    from .lenses import neuroscope
    from .render.report import write_scan_report
    from .scanning.run import scan

    say = echo or (lambda _msg: None)
    out = claim_dir(out, DEMO_KIND, overwrite=overwrite)
    t0 = time.perf_counter()
    corpus = datasets.drug_reviews(label="rating", categories=["positive", "negative"])
    if limit:
        corpus = corpus.subset(range(min(limit, len(corpus))))
    say(f"corpus: {corpus!r}")
    # The map workers start (importing umap-learn, loading its cached numba code) while the model loads and the
    # scan runs, so the maps find them ready (bench/RESULTS.md).
    embedding.warm_up(n_jobs=-1, n_layers=6)
    # the plain Hugging Face model and the "hf" capture backend: same activations as the TL bridge (tested), faster
    model = models.minilm(device=device, backend="hf")
    result = scan(model, corpus, batch_size=batch_size, pooling=("mean", "max"), progress=progress)
    t_scan = time.perf_counter() - t0
    say(f"{result!r}\nscan: {t_scan:.1f} s")
    mri_index, mri_t = mri_page(result, os.path.join(out, "mri"), grid=10, seed=0,
                                categories=("positive", "negative"), progress=progress,
                                title="mri_lens demo: MRI of MiniLM-L6 on drug reviews (positive vs negative)",
                                links=[("back to the demo report", "../index.html")], overwrite=overwrite,
                                assets=out, echo=echo)
    say(f"MRI pipeline (scan + region maps + graph): {t_scan + mri_t['region maps'] + mri_t['graph']:.1f} s "
        f"(scan {t_scan:.1f}, maps {mri_t['region maps']:.1f}, graph {mri_t['graph']:.2f})")
    scan_dir = result.save(os.path.join(out, "scan"), overwrite=overwrite)

    t1 = time.perf_counter()
    tiny = models.tiny_lm(device=device)
    view = neuroscope.view(tiny, neuroscope.prompts.sequence_prompts(), hi=3.0, lo=0.0, select="hi")
    view.save_html(os.path.join(out, "neuroscope_view.html"), summary=True,
                   title="mri_lens demo: tiny LM, thresholded view of in-context sequence prompts",
                   overwrite=overwrite, assets=out)
    code = scan(tiny, datasets.stdlib_code(n_docs=limit or 200), overflow="windows", progress=progress)
    layer0 = code.stats.max[0]
    neurons = sorted(int(n) for n in layer0.argsort()[::-1][:12])  # the 12 strongest layer-0 neurons
    n2g_graphs, n2g_links = demo_section(tiny, code, out, neurons)  # N2G graphs of the same 12 neurons
    site_index = neuroscope.site(code, tiny, os.path.join(out, "site"), layers=[0], neurons=neurons,
                                 title="mri_lens demo: tiny LM neurons on standard-library code", n2g=n2g_graphs,
                                 overwrite=overwrite)
    t_lenses = time.perf_counter() - t1
    say(f"neuroscope view and site: {t_lenses:.1f} s")

    report = write_scan_report(result, os.path.join(out, "index.html"),
                               title="mri_lens demo: MiniLM-L6 on drug reviews (positive vs negative)",
                               categories=("positive", "negative"),
                               links=[("MRI: region maps, co-activation graph, enriched regions, probe",
                                       "mri/index.html"),
                                      ("Neuroscope view: tiny LM on in-context sequence prompts",
                                       "neuroscope_view.html"),
                                      ("Neuroscope site: 12 tiny-LM neurons on standard-library code",
                                       "site/index.html")] + n2g_links, overwrite=overwrite, assets=out)
    total = time.perf_counter() - t0
    say(f"saved scan: {scan_dir}")
    say(f"total {total:.1f} s")
    say(f"report: {os.path.abspath(report)}  (open it in a browser; works offline)")
    return {"out": out, "report": report, "mri": mri_index, "scan": scan_dir, "site": site_index,
            "seconds": {"scan": t_scan, **mri_t, "neuroscope and N2G": t_lenses, "total": total}}
