"""``mri-lens`` command line: a thin layer over the public functions.

    mri-lens scan --model <name|dir|tiny|minilm> --corpus data.csv --text-col text --label-col label --out runs/x
    mri-lens report --scan runs/x --out runs/x/report.html
    mri-lens demo [--out mri_lens_demo]
    mri-lens neuroscope --model tiny --prompt "Sequence: red, green, blue" --out view.html [--hi 3 --lo 0]
    mri-lens site --scan runs/x --model tiny --out site/ [--layers 0] [--neurons 0-99]
    mri-lens explain --scan runs/x --layer 0 --neurons 0-63 --out runs/x/n2g [--model tiny]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .errors import MriLensError


def _model(name: str, device: str | None):
    from . import models
    from .adapter import load_model

    if name in ("tiny", "tiny_lm", "tiny-lm"):
        return models.tiny_lm(device=device)
    if name in ("minilm", "minilm-l6"):
        return models.minilm(device=device)
    return load_model(name, device=device)


def _corpus(path: str, text: str, label: str | None):
    from .corpus import Corpus

    if path.lower().endswith((".jsonl", ".ndjson")):
        return Corpus.from_jsonl(path, text=text, label=label)
    return Corpus.from_csv(path, text=text, label=label)


def _scan_model_args(p: argparse.ArgumentParser) -> None:
    """The arguments :func:`_scan_and_model` reads."""
    p.add_argument("--scan", required=True)
    p.add_argument("--model", default=None, help="the scanned model (default: the scan's model id)")
    p.add_argument("--device", default=None)


def _scan_and_model(args):
    """The saved scan of ``--scan`` and the model it was made with (``--model``, default: the scan's model id)."""
    from .store import Scan

    s = Scan.load(args.scan)
    return s, _model(args.model or s.meta.get("model_id") or "", args.device)


def _layers(spec: str | None):
    if not spec:
        return None
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def cmd_scan(args) -> int:
    from .scanner import scan

    corpus = _corpus(args.corpus, args.text_col, args.label_col)
    model = _model(args.model, args.device)
    result = scan(model, corpus, layers=_layers(args.layers), batch_size=args.batch_size,
                  max_batch_tokens=args.max_batch_tokens or None, max_length=args.max_length, overflow=args.overflow, pooling=tuple(args.pooling.split(",")),
                  top_k=args.top_k, dtype=args.dtype, padding_side=args.padding_side, progress=not args.quiet)
    path = result.save(args.out)
    print(f"{result!r}\nsaved to {path}")
    return 0


def cmd_report(args) -> int:
    from .report import write_scan_report
    from .store import Scan

    s = Scan.load(args.scan)
    cats = tuple(args.categories.split(",")) if args.categories else None
    out = write_scan_report(s, args.out or os.path.join(args.scan, "report.html"), categories=cats)
    print(f"report written to {os.path.abspath(out)}")
    return 0


def cmd_demo(args) -> int:
    """MiniLM-L6 on drug reviews (positive vs negative): scan, MRI lens (region maps, graph, probe), offline HTML
    report; then the Neuroscope and N2G lenses on the tiny LM: the thresholded view of the sequence prompts and a
    small neuron site whose pages show each neuron's N2G graph and scores."""
    from . import datasets, models, regions
    from .neuroscope import neuroscope
    from .prompts import sequence_prompts
    from .report import write_scan_report
    from .scanner import scan
    from .site import neuroscope_site

    t0 = time.perf_counter()
    corpus = datasets.drug_reviews(label="rating", categories=["positive", "negative"])
    if args.limit:
        corpus = corpus.subset(range(min(args.limit, len(corpus))))
    print(f"corpus: {corpus!r}")
    # The map workers start (importing umap-learn, loading its cached numba code: ~2 s each) while the model loads
    # and the scan runs, so the maps find them ready (maps 7-8 s -> 3 s; bench/RESULTS.md).
    regions.warm_up(n_jobs=-1, n_layers=6)
    # the plain Hugging Face model and the "hf" capture backend: same activations as the TL bridge (tested), faster
    model = models.minilm(device=args.device, backend="hf")
    result = scan(model, corpus, batch_size=args.batch_size, pooling=("mean", "max"), progress=not args.quiet)
    t_scan = time.perf_counter() - t0
    print(f"{result!r}\nscan: {t_scan:.1f} s")
    _, mri_t = _run_mri(result, os.path.join(args.out, "mri"), grid=10, seed=0,
                                 categories=("positive", "negative"), progress=not args.quiet,
                                 title="mri_lens demo: MRI of MiniLM-L6 on drug reviews (positive vs negative)",
                                 links=[("back to the demo report", "../index.html")])
    print(f"MRI pipeline (scan + region maps + graph): {t_scan + mri_t['region maps'] + mri_t['graph']:.1f} s "
          f"(scan {t_scan:.1f}, maps {mri_t['region maps']:.1f}, graph {mri_t['graph']:.2f})")
    scan_dir = result.save(os.path.join(args.out, "scan"))

    t1 = time.perf_counter()
    tiny = models.tiny_lm(device=args.device)
    view = neuroscope(tiny, sequence_prompts(), hi=3.0, lo=0.0, select="hi")
    view.save_html(os.path.join(args.out, "neuroscope_view.html"), summary=True,
                   title="mri_lens demo: tiny LM, thresholded view of in-context sequence prompts")
    code = scan(tiny, datasets.stdlib_code(n_docs=args.limit or 200), overflow="windows", progress=not args.quiet)
    layer0 = code.stats.max[0]
    neurons = sorted(int(n) for n in layer0.argsort()[::-1][:12])  # the 12 strongest layer-0 neurons
    from .n2g import demo_section

    n2g_graphs, n2g_links = demo_section(tiny, code, args.out, neurons)  # N2G graphs of the same 12 neurons
    neuroscope_site(code, tiny, os.path.join(args.out, "site"), layers=[0], neurons=neurons,
                    title="mri_lens demo: tiny LM neurons on standard-library code", n2g=n2g_graphs)
    print(f"neuroscope view and site: {time.perf_counter() - t1:.1f} s")

    report = write_scan_report(result, os.path.join(args.out, "index.html"),
                               title="mri_lens demo: MiniLM-L6 on drug reviews (positive vs negative)",
                               categories=("positive", "negative"),
                               links=[("MRI: region maps, co-activation graph, enriched regions, probe",
                                       "mri/index.html"),
                                      ("Neuroscope view: tiny LM on in-context sequence prompts",
                                       "neuroscope_view.html"),
                                      ("Neuroscope site: 12 tiny-LM neurons on standard-library code",
                                       "site/index.html")] + n2g_links)
    print(f"saved scan: {scan_dir}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    print(f"report: {os.path.abspath(report)}  (open it in a browser; works offline)")
    return 0


def cmd_compile(args) -> int:
    """JIT-compile the numba code once (the scan's statistics kernel, umap-learn's); numba caches it on disk."""
    from . import _kernels, regions

    t0 = time.perf_counter()
    done = _kernels.precompile()
    t1 = time.perf_counter()
    print(f"scan statistics kernel: {'compiled' if done else 'numba not installed (torch path)'} "
          f"in {t1 - t0:.1f} s")
    regions.compile_umap()
    print(f"umap-learn: compiled in {time.perf_counter() - t1:.1f} s (cached on disk for every later process)")
    return 0


def _run_mri(scan, out: str, *, grid: int = 10, mode: str = "neurons", seed: int = 0, min_weight: int = 5,
             top_k: int | None = 3, categories=None, n_jobs: int = -1, progress: bool = True, title: str | None = None,
             links=()) -> tuple[str, dict[str, float]]:
    """Region maps + co-activation graph + report of a scan, saved under ``out``. Returns (report path, timings)."""
    from .graph import coactivation_graph, write_graph
    from .regions import RegionMaps, separability
    from .report import write_mri_report

    t0 = time.perf_counter()
    maps = RegionMaps.fit(scan, grid=grid, mode=mode, seed=seed, n_jobs=n_jobs, progress=progress)
    t_maps = time.perf_counter() - t0
    t1 = time.perf_counter()
    g = coactivation_graph(maps, min_weight=min_weight, top_k=top_k or None, enrichment=maps.labels is not None)
    t_graph = time.perf_counter() - t1
    maps.save(os.path.join(out, "maps"))
    for ext in ("json", "graphml", "gexf"):
        write_graph(g, os.path.join(out, f"graph.{ext}"))
    t2 = time.perf_counter()
    probe = separability(maps, scan, seed=seed) if scan.labels is not None and len(scan.label_names) >= 2 else None
    t_probe = time.perf_counter() - t2
    timings = {"region maps": t_maps, "graph": t_graph}
    if probe is not None:
        timings["probe"] = t_probe
    report = write_mri_report(maps, g, scan, os.path.join(out, "index.html"), categories=categories, probe=probe,
                              timings=timings, title=title or f"mri_lens MRI: {scan.meta.get('model_id')}",
                              links=links)
    print(f"{maps!r}\nregion maps: {t_maps:.1f} s, graph: {t_graph:.2f} s ({g.number_of_nodes()} regions, "
          f"{g.number_of_edges()} edges)" + (f", probe: {t_probe:.1f} s" if probe is not None else ""))
    return report, timings


def cmd_mri(args) -> int:
    """Region maps, co-activation graph, metrics and probe of a saved scan, as an offline HTML page."""
    from .store import Scan

    result = Scan.load(args.scan)
    out = args.out or os.path.join(args.scan, "mri")
    cats = args.categories.split(",") if args.categories else None
    report, _ = _run_mri(result, out, grid=args.grid, mode=args.mode, seed=args.seed, min_weight=args.min_weight,
                         top_k=args.top_k, categories=cats, n_jobs=args.n_jobs, progress=not args.quiet)
    print(f"report: {report}  (maps/, graph.json, graph.graphml, graph.gexf beside it)")
    return 0


def _value_errors_as_one_line(f):
    """New subcommands report bad option values (ValueError) like MriLensError: one line, exit status 2."""
    def wrapped(args) -> int:
        try:
            return f(args)
        except ValueError as e:
            if isinstance(e, MriLensError):
                raise
            print(f"mri-lens: error: {e}", file=sys.stderr)
            return 2
    wrapped.__doc__ = f.__doc__
    return wrapped


@_value_errors_as_one_line
def cmd_neuroscope(args) -> int:
    from .neuroscope import ColorBins, neuroscope
    from .prompts import sequence_prompts

    prompts = args.prompt or sequence_prompts()
    scan = None
    if args.relative is not None:
        if not args.scan:
            raise ValueError("--relative needs --scan (a saved scan of the same model) to take quantiles from")
        from .store import Scan

        scan = Scan.load(args.scan)
    bins = ColorBins(red=args.red, orange=args.orange if args.orange is not None else args.hi, lo=args.lo)
    model = _model(args.model, args.device)
    view = neuroscope(model, prompts, layers=_layers(args.layers), hi=args.hi, lo=args.lo, select=args.select,
                      relative=args.relative, relative_to=args.relative_to, scan=scan, sort=args.sort,
                      max_neurons_per_layer=args.max_neurons or None, bins=bins)
    out = view.save_html(args.out, summary=args.summary)
    print(f"{view!r}\nview written to {out}")
    return 0


@_value_errors_as_one_line
def cmd_explain(args) -> int:
    """N2G graphs of a layer's neurons from a saved scan: one JSON per neuron plus a summary table (resumable)."""
    from .n2g import N2GConfig, explain_layer

    s, model = _scan_and_model(args)
    cfg = N2GConfig(pivots_per_example=args.pivots, end_values=args.end_values, augment_pivots=args.augment,
                    n_substitutes=args.substitutes)
    t0 = time.perf_counter()
    for layer in _layers(args.layer) or []:
        graphs = explain_layer(model, s, layer, _layers(args.neurons), k=args.k, config=cfg, seed=args.seed,
                               out_dir=args.out, evaluate=not args.no_eval, progress=not args.quiet,
                               augmenter=args.augmenter)
        print(f"{graphs!r}")
        table = graphs.table()
        if len(table):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"N2G graphs written to {os.path.abspath(args.out)} in {time.perf_counter() - t0:.1f} s")
    return 0


@_value_errors_as_one_line
def cmd_site(args) -> int:
    from .site import neuroscope_site

    s, model = _scan_and_model(args)
    t0 = time.perf_counter()
    index = neuroscope_site(s, model, args.out, layers=_layers(args.layers), neurons=_layers(args.neurons),
                            k=args.k)
    print(f"site written to {index} in {time.perf_counter() - t0:.1f} s (open it in a browser; works offline)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mri-lens", description="Neuron-level lenses for TransformerLens models.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("scan", help="scan a corpus and save the result")
    s.add_argument("--model", required=True, help="TL/hub name, local HF directory, 'tiny' or 'minilm'")
    s.add_argument("--corpus", required=True, help="CSV, TSV or JSONL file")
    s.add_argument("--text-col", default="text")
    s.add_argument("--label-col", default=None)
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--layers", default=None, help="e.g. 0,1 or 0-3 (default: all)")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--max-batch-tokens", type=int, default=2048)
    s.add_argument("--max-length", type=int, default=None)
    s.add_argument("--overflow", choices=("truncate", "windows", "error"), default="truncate")
    s.add_argument("--pooling", default="mean,max")
    s.add_argument("--top-k", type=int, default=20)
    s.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    s.add_argument("--padding-side", choices=("right", "left"), default="right")
    s.add_argument("--device", default=None)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_scan)

    r = sub.add_parser("report", help="offline HTML report of a saved scan")
    r.add_argument("--scan", required=True)
    r.add_argument("--out", default=None)
    r.add_argument("--categories", default=None, help="two label names, comma separated")
    r.set_defaults(func=cmd_report)

    d = sub.add_parser("demo", help="MiniLM-L6 on drug reviews, end to end, offline")
    d.add_argument("--out", default="mri_lens_demo")
    d.add_argument("--limit", type=int, default=None, help="use only the first N reviews")
    d.add_argument("--batch-size", type=int, default=32)
    d.add_argument("--device", default=None)
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("compile", help="JIT-compile the numba kernels once (make setup runs it), so a new "
                                       "environment's first scan and first region map do not wait for it")
    c.set_defaults(func=cmd_compile)

    n = sub.add_parser("neuroscope", help="thresholded token view of prompts across layers (offline HTML)")
    n.add_argument("--model", required=True, help="TL/hub name, local HF directory, 'tiny' or 'minilm'")
    n.add_argument("--prompt", action="append", default=None,
                   help="a prompt (repeat for several; default: the in-context sequence prompts)")
    n.add_argument("--out", required=True, help="output HTML file")
    n.add_argument("--layers", default=None, help="e.g. 0,1 or 0-3 (default: all)")
    n.add_argument("--hi", type=float, default=3.0)
    n.add_argument("--lo", type=float, default=0.0)
    n.add_argument("--select", choices=("hi", "lo", "either"), default="hi")
    n.add_argument("--relative", type=float, default=None, help="quantile, e.g. 0.999 (needs --scan)")
    n.add_argument("--relative-to", choices=("neuron", "layer"), default="neuron")
    n.add_argument("--scan", default=None, help="saved scan of the same model, for --relative")
    n.add_argument("--sort", choices=("max", "coverage"), default="max")
    n.add_argument("--max-neurons", type=int, default=50, help="per layer (0: no cap)")
    n.add_argument("--red", type=float, default=3.5, help="colour bin: red above this")
    n.add_argument("--orange", type=float, default=None, help="colour bin: orange above this (default: --hi)")
    n.add_argument("--summary", action="store_true", help="add the layer progression figure (plotly inlined)")
    n.add_argument("--device", default=None)
    n.set_defaults(func=cmd_neuroscope)

    m = sub.add_parser("mri", help="MRI lens of a saved scan: region maps, co-activation graph, report")
    m.add_argument("--scan", required=True)
    m.add_argument("--out", default=None, help="output directory (default: <scan>/mri)")
    m.add_argument("--grid", type=int, default=10, help="n: regions form an n x n grid")
    m.add_argument("--mode", choices=("neurons", "documents"), default="neurons")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--min-weight", type=int, default=5, help="drop edges with fewer co-activating documents")
    m.add_argument("--top-k", type=int, default=3,
                   help="keep an edge only if it is among the k heaviest out-edges of its source or in-edges of its "
                        "target (0: keep all)")
    m.add_argument("--categories", default=None, help="label names to contrast, comma separated")
    m.add_argument("--n-jobs", type=int, default=-1, help="worker processes for the per-layer maps")
    m.add_argument("--quiet", action="store_true")
    m.set_defaults(func=_value_errors_as_one_line(cmd_mri))

    t = sub.add_parser("site", help="offline static Neuroscope site (neuron pages) of a saved scan")
    _scan_model_args(t)
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--layers", default=None, help="e.g. 0,1 or 0-3 (default: every scanned layer)")
    t.add_argument("--neurons", default=None, help="e.g. 0-99 (default: all)")
    t.add_argument("--k", type=int, default=20, help="top examples per neuron")
    t.set_defaults(func=cmd_site)

    e = sub.add_parser("explain", help="N2G graphs (token patterns) of neurons from a saved scan")
    _scan_model_args(e)
    e.add_argument("--layer", required=True, help="e.g. 0, or 0-3 for several layers")
    e.add_argument("--neurons", default=None, help="e.g. 0-63 (default: all)")
    e.add_argument("--out", required=True, help="output directory (L<layer>/N<neuron>.json, summary.csv)")
    e.add_argument("--k", type=int, default=20, help="top examples per neuron (half train, half test)")
    e.add_argument("--pivots", type=int, default=1, help="pivots per example (1: the paper's method)")
    e.add_argument("--end-values", choices=("firing", "calibrated"), default="firing",
                   help="END node values: 'firing' (the paper) or 'calibrated' on the whole training examples")
    e.add_argument("--augment", choices=("main", "all"), default="main",
                   help="windows augmented: each example's main pivot's (the paper) or every pivot's")
    e.add_argument("--augmenter", choices=("embedding", "probe", "none"), default="embedding",
                   help="substitutes: nearest tokens in the model's embedding (default), the tokens the neuron "
                        "itself ranks highest when run alone ('probe'), or no augmentation")
    e.add_argument("--substitutes", type=int, default=5, help="substitutes per important token (the paper: 5)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-eval", action="store_true", help="skip the held-out scoring")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_explain)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MriLensError as e:
        print(f"mri-lens: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
