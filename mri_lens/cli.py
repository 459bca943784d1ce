"""``mri-lens`` command line: a thin layer over the public functions.

    mri-lens scan --model <name|dir|tiny|minilm> --corpus data.csv --text-col text --label-col label --out runs/x
    mri-lens report --scan runs/x --out runs/x/report.html
    mri-lens demo [--out mri_lens_demo]
    mri-lens neuroscope --model tiny --prompt "Sequence: red, green, blue" --out view.html [--hi 3 --lo 0]
    mri-lens site --scan runs/x --model tiny --out site/ [--layers 0] [--neurons 0-99] [--n2g runs/x/n2g]
    mri-lens explain --scan runs/x --layer 0 --neurons 0-63 --out runs/x/n2g [--model tiny]

Every user mistake is one line on stderr and exit status 2, never a traceback: argument errors
(``mri-lens <cmd>: error: ...``, checked before any model loads) and every error the library raises on purpose
(``mri-lens: error: ...``: :class:`~mri_lens.errors.MriLensError`, ``ValueError``, ``OSError``). Ctrl-C is one
line and status 130. Anything else is a bug and keeps its traceback. Every ``--out`` is checked before any work
(:func:`mri_lens.storage.write.check_save_target`); ``--force`` writes beside files mri_lens did not write. Layers
and neurons are checked against the saved ``--scan`` before any model loads. Python warnings are one line each,
``warning: <message>``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings

from .cli_args import build_parser, one_line
from .errors import MriLensError
from .storage.write import check_save_target


def _message(e: BaseException) -> str:
    """``e`` as one line: its message's lines joined; an OS error as ``<file>: <reason>``."""
    if isinstance(e, OSError) and not isinstance(e, MriLensError) and e.strerror:
        names = [n for n in (e.filename, e.filename2) if n is not None]
        return one_line(f"{' -> '.join(map(str, names))}: {e.strerror}" if names else e.strerror)
    return one_line(str(e)) or type(e).__name__


def _model(name: str, device: str | None, backend: str | None = None):
    from .model.bundled import load_named_model

    return load_named_model(name, device=device, **({"backend": backend} if backend else {}))


def _corpus(path: str, text: str, label: str | None):
    from .data.corpus import Corpus

    if path.lower().endswith((".jsonl", ".ndjson")):
        return Corpus.from_jsonl(path, text=text, label=label)
    return Corpus.from_csv(path, text=text, label=label)


def _checked_scan(path: str, layers: list[int] | None = None, neurons: list[int] | None = None):
    """The saved scan at ``path``, with ``layers`` and ``neurons`` checked against it (one line, before any model
    loads: a layer it did not scan, a neuron beyond its ``d_mlp``)."""
    from .errors import ScanError
    from .results.scan import Scan

    s = Scan.load(path)
    for layer in layers or ():
        s.layer_index(layer)
    if neurons and max(neurons) >= s.d_mlp:
        raise ScanError(f"neuron {max(neurons)} is beyond the scan's {s.d_mlp} neurons per layer (0..{s.d_mlp - 1})")
    return s


def _scan_and_model(args, layers: list[int] | None = None):
    """The saved scan of ``--scan`` (``layers`` and ``--neurons`` checked against it first) and the model it was
    made with (``--model``, default: the scan's model id)."""
    s = _checked_scan(args.scan, layers, getattr(args, "neurons", None))
    return s, _model(args.model or s.meta.get("model_id") or "", args.device)


def _scan_setup(args):
    """The scan options and engine the flags ask for (checked before anything is read or loaded)."""
    from .scanning import LocalEngine, RayEngine, ScanOptions

    options = ScanOptions(layers=args.layers, batch_size=args.batch_size,
                          max_batch_tokens=args.max_batch_tokens or None, max_length=args.max_length,
                          overflow=args.overflow, pooling=args.pooling, top_k=args.top_k, dtype=args.dtype,
                          padding_side=args.padding_side, backend=args.backend, shard_tokens=args.shard_tokens,
                          shard_bytes=args.shard_mb << 20 if args.shard_mb else None,
                          units=getattr(args, "units", None))
    if args.engine == "ray":
        engine = RayEngine(workers=args.workers, address=args.address, gpus_per_worker=args.gpus_per_worker,
                           threads_per_worker=args.threads_per_worker, max_attempts=args.max_attempts,
                           connect_timeout_s=args.connect_timeout)
    else:
        engine = LocalEngine()
    return options, engine


def _run_summary(result, out: str) -> str:
    """What a scan command did, in words (``Scan.meta["run"]``)."""
    run = result.meta.get("run", {})
    if run.get("already_finished"):
        n = run.get("shards", 1)
        return (f"{out} already holds this scan, complete: nothing computed "
                f"({'its one shard was' if n == 1 else f'all {n} shards were'} done)")
    parts = [f"{run.get('computed', 0)} of {run.get('shards', 1)} shards computed now",
             f"{run.get('resumed', 0)} resumed"]
    if run.get("shared"):
        parts.append(f"{run['shared']} computed by another process")
    text = f"saved to {out} ({', '.join(parts)})"
    if run.get("repaired"):
        text += "; computed again: " + "; ".join(f"shard {r['shard']} ({r['why']})" for r in run["repaired"])
    return text


def cmd_scan(args) -> int:
    """Scan a corpus into ``--out``: shards written as they finish, so a killed scan resumes when run again."""
    from .model.bundled import ModelSpec
    from .scanning.run import scan

    options, engine = _scan_setup(args)
    out = check_save_target(args.out, "mri_lens.scan", overwrite=args.force)
    corpus = _corpus(args.corpus, args.text_col, args.label_col)
    if args.engine == "ray":  # every worker loads the model from its name
        model = ModelSpec(args.model, backend=args.backend or "transformer_lens", device=args.device)
    else:
        model = _model(args.model, args.device, args.backend) if args.backend else _model(args.model, args.device)
    result = scan(model, corpus, options, engine=engine, out=out, progress=not args.quiet, overwrite=args.force)
    print(f"{result!r}\n{_run_summary(result, out)}")
    return 0


def cmd_report(args) -> int:
    from .render.report import write_scan_report
    from .results.scan import Scan

    out = check_save_target(args.out or os.path.join(args.scan, "report.html"), "mri_lens.page",
                            overwrite=args.force)
    s = Scan.load(args.scan)
    out = write_scan_report(s, out, categories=args.categories, overwrite=args.force)
    print(f"report written to {os.path.abspath(out)}")
    return 0


def cmd_find(args) -> int:
    """Neurons of a saved scan ranked by a token, density, max or category selectivity (no model runs)."""
    from .lenses import neuroscope
    from .results.scan import Scan

    tokens = args.token or None
    table = neuroscope.find(Scan.load(args.scan), tokens=tokens, by=args.by, layers=args.layers, limit=args.limit)
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"{len(table)} neurons written to {os.path.abspath(args.csv)}")
    else:
        print(table.to_string(index=False))
    return 0


def cmd_demo(args) -> int:
    """MiniLM-L6 on drug reviews: scan, MRI, report; Neuroscope and N2G on the tiny LM's neurons and on its SAE
    and transcoder latents (:func:`pipelines.demo`)."""
    from .pipelines import demo

    demo(args.out, limit=args.limit, batch_size=args.batch_size, device=args.device, progress=not args.quiet,
         overwrite=args.force)
    return 0


def cmd_compile(args) -> int:
    """JIT-compile the numba code once (the scan's statistics kernel, umap-learn's); numba caches it on disk."""
    from .scanning import kernels as _kernels
    from .lenses.mri import embedding

    t0 = time.perf_counter()
    done = _kernels.precompile()
    t1 = time.perf_counter()
    print(f"scan statistics kernel: {'compiled' if done else 'numba not installed (torch path)'} "
          f"in {t1 - t0:.1f} s")
    embedding.compile_umap()
    print(f"umap-learn: compiled in {time.perf_counter() - t1:.1f} s (cached on disk for every later process)")
    return 0


def cmd_mri(args) -> int:
    """Region maps, co-activation graph, metrics and probe of a saved scan, as an offline HTML page."""
    from .data.corpus import check_categories
    from .errors import CategoryError
    from .pipelines import mri_page
    from .model.units import recorded
    from .results.scan import Scan

    out = check_save_target(args.out or os.path.join(args.scan, "mri"), "mri_lens.mri_page", overwrite=args.force)
    result = Scan.load(args.scan)
    cats = list(args.categories) if args.categories else None
    if cats:
        if result.labels is None:
            raise CategoryError(f"--categories {','.join(cats)} given but the scan has no labels")
        check_categories(cats, result.label_names, "the scan")
    kind = recorded(result.meta).get("kind")
    if args.units is not None and args.units != kind:
        raise ValueError(f"--units {args.units}: the scan holds {kind} units; units are chosen when scanning "
                         f"(mri-lens scan --units {args.units} ...)")
    if args.pooling is not None and args.pooling not in result.poolings:
        raise ValueError(f"--pooling {args.pooling}: the scan kept {', '.join(result.poolings)} (scan again with "
                         f"--pooling {args.pooling})")
    report, _ = mri_page(result, out, grid=args.grid, mode=args.mode, seed=args.seed, reducer=args.reducer,
                         n_components=args.components, scaling=args.scaling, pooling=args.pooling,
                         threshold=args.threshold, positive_only=args.positive_only, min_weight=args.min_weight,
                         top_edges=args.top_edges, categories=cats, n_jobs=args.n_jobs, progress=not args.quiet,
                         overwrite=args.force)
    print(f"report: {report}  (maps/, graph.json, graph.graphml, graph.gexf beside it)")
    return 0


def cmd_neuroscope(args) -> int:
    from .lenses import neuroscope

    out = check_save_target(args.out, "mri_lens.page", overwrite=args.force)
    if args.prompt is not None and not all(p.strip() for p in args.prompt):
        raise ValueError("--prompt must not be empty")
    prompts = args.prompt or neuroscope.prompts.sequence_prompts()
    if args.relative is None:
        if args.lo > args.hi:
            raise ValueError(f"--lo must not be greater than --hi, got --lo {args.lo:g} --hi {args.hi:g} (swapped?)")
        if args.select == "either" and not args.lo < args.hi:
            raise ValueError(f"--select either needs --lo below --hi, got --lo {args.lo:g} --hi {args.hi:g}")
    if args.relative is not None and not args.scan:
        raise ValueError("--relative needs --scan (a saved scan of the same model) to take quantiles from")
    scan = _checked_scan(args.scan, args.layers) if args.scan else None
    bins = neuroscope.ColorBins(red=args.red, orange=args.orange if args.orange is not None else args.hi, lo=args.lo)
    model = _model(args.model, args.device)
    view = neuroscope.view(model, prompts, layers=args.layers, hi=args.hi, lo=args.lo, select=args.select,
                      relative=args.relative, relative_to=args.relative_to, scan=scan, sort=args.sort,
                      max_neurons_per_layer=args.max_neurons or None, bins=bins)
    out = view.save_html(out, summary=args.summary, overwrite=args.force)
    print(f"{view!r}\nview written to {out}")
    return 0


def cmd_explain(args) -> int:
    """N2G graphs of a layer's neurons from a saved scan: one JSON per neuron plus a summary table (resumable), and
    their pages (``index.html``: every explained neuron; ``L<layer>/index.html``: each one's graph and scores)."""
    from .lenses.n2g import N2GConfig, explain_layer

    out = check_save_target(args.out, "mri_lens.n2g", overwrite=args.force)
    chosen = {name: v for name, v in (("pivots_per_example", args.pivots), ("end_values", args.end_values),
                                      ("augment_pivots", args.augment), ("augmenter", args.augmenter),
                                      ("n_substitutes", args.substitutes), ("fallback", args.fallback))
              if v is not None}
    cfg = N2GConfig.paper(**chosen) if args.paper else N2GConfig(**chosen)
    if args.engine == "ray":
        s = _checked_scan(args.scan, args.layer, args.neurons)
        model = args.model or s.meta.get("model_id") or ""
    else:
        s, model = _scan_and_model(args, args.layer)
    t0 = time.perf_counter()
    done = {}
    for layer in args.layer:
        graphs = explain_layer(model, s, layer, args.neurons, k=args.top_k, config=cfg, seed=args.seed,
                               out_dir=out, evaluate=not args.no_eval, progress=not args.quiet,
                               overwrite=args.force, engine=args.engine,
                               workers=args.workers, address=args.address)
        done[layer] = graphs
        print(f"{graphs!r}")
        table = graphs.table()
        if len(table):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    index = _explain_pages(out, done, str(s.meta.get("model_id") or args.model or ""))
    print(f"N2G graphs written to {out} in {time.perf_counter() - t0:.1f} s; pages: {index}")
    return 0


def _explain_pages(out: str, done: dict, model_id: str) -> str:
    """The pages of the N2G directory ``out``: the layers explained now (``{layer: LayerGraphs}``) and those earlier
    runs saved there (so the index keeps them). Returns the index page's path."""
    from .lenses.n2g import load_layer
    from .lenses.n2g.pages import saved_layers, write_pages

    layers = dict(done)
    for layer in saved_layers(out):
        if layer not in layers:
            try:
                layers[layer] = load_layer(out, layer)
            except (MriLensError, ValueError):  # a damaged earlier layer: left out of the pages
                pass
    return write_pages(out, layers, model_id=model_id)


def cmd_site(args) -> int:
    from .lenses import neuroscope

    out = check_save_target(args.out, "mri_lens.site", overwrite=args.force)
    if args.n2g is not None:
        _check_n2g_dir(args.n2g)
    s, model = _scan_and_model(args, args.layers)
    t0 = time.perf_counter()
    index = neuroscope.site(s, model, out, layers=args.layers, neurons=args.neurons, k=args.top_k,
                            n2g=args.n2g, overwrite=args.force)
    print(f"site written to {index} in {time.perf_counter() - t0:.1f} s (open it in a browser; works offline)")
    return 0


def _check_n2g_dir(path: str) -> None:
    """``--n2g``: the output directory of ``mri-lens explain`` (its manifest says so), else one line."""
    from .storage.write import file_kind

    if not os.path.isdir(path):
        raise ValueError(f"--n2g {path}: no such directory (give the --out of mri-lens explain)")
    if file_kind(os.path.join(path, "manifest.json")) != "mri_lens.n2g":
        raise ValueError(f"--n2g {path} is not an output directory of mri-lens explain")


def _quiet_libraries() -> None:
    """``--quiet``: no progress bars from the libraries either (transformers' and the hub's loading bars)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


COMMANDS = {"scan": cmd_scan, "report": cmd_report, "demo": cmd_demo, "compile": cmd_compile, "mri": cmd_mri,
            "neuroscope": cmd_neuroscope, "explain": cmd_explain, "site": cmd_site, "find": cmd_find}


@contextlib.contextmanager
def _warnings_as_lines():
    """Python warnings shown as one line each on stderr, ``warning: <message>`` (no source path, no code line);
    the previous ``warnings.showwarning`` and ``warnings.formatwarning`` are restored after."""
    shown, formatted = warnings.showwarning, warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None) -> str:
        return f"warning: {one_line(str(message))}\n"

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        try:
            (file or sys.stderr).write(fmt(message, category, filename, lineno))
        except OSError:  # a closed stderr: the warning is lost, as Python's own would be
            pass

    warnings.showwarning, warnings.formatwarning = show, fmt
    try:
        yield
    finally:
        warnings.showwarning, warnings.formatwarning = shown, formatted


def main(argv: list[str] | None = None) -> int:
    """Run one command. Returns the exit status: 0, 2 for a user mistake (one line on stderr, no traceback), 130
    for Ctrl-C. Other exceptions are bugs and propagate with their traceback."""
    with _warnings_as_lines():
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # --help (0) or an argument error (2, already printed on one line)
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        if getattr(args, "quiet", False):
            _quiet_libraries()
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("mri-lens: interrupted", file=sys.stderr)
        return 130
    except (MriLensError, ValueError, OSError) as e:  # MriLensError, UnicodeDecodeError, missing files, permissions
        print(f"mri-lens: error: {_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
