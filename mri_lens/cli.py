"""``mri-lens`` command line: a thin layer over the public functions.

    mri-lens scan --model <name|dir|tiny|minilm> --corpus data.csv --text-col text --label-col label --out runs/x
    mri-lens report --scan runs/x --out runs/x/report.html
    mri-lens demo [--out mri_lens_demo]
    mri-lens neuroscope --model tiny --prompt "Sequence: red, green, blue" --out view.html [--hi 3 --lo 0]
    mri-lens site --scan runs/x --model tiny --out site/ [--layers 0] [--neurons 0-99]
    mri-lens explain --scan runs/x --layer 0 --neurons 0-63 --out runs/x/n2g [--model tiny]

Every user mistake is one line on stderr and exit status 2, never a traceback: argument errors
(``mri-lens <cmd>: error: ...``, checked before any model loads) and every error the library raises on purpose
(``mri-lens: error: ...``: :class:`~mri_lens.errors.MriLensError`, ``ValueError``, ``OSError``). Ctrl-C is one
line and status 130. Anything else is a bug and keeps its traceback. Every ``--out`` is checked before any work
(:func:`mri_lens.storage.write.check_save_target`); ``--force`` writes beside files mri_lens did not write.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time

from .storage.write import check_save_target
from .errors import MriLensError
from .scanning.plan import POOLINGS

_MAX_INDEX = 10_000_000  # larger layer / neuron numbers are typos (and would build huge lists)
_FORCE_HELP = "write even if the output path holds other files; files mri_lens did not write are never removed"
_FORCE_FILE_HELP = "replace the file at --out even if mri_lens did not write it"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with every error on one line, ``<prog>: error: <message>``, exit status 2 (no usage block)."""

    def parse_known_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        # "argument --top-edges/--top-k: ..." names the spelling the user typed, when they typed one of several
        m = re.match(r"argument ((?:-[\w-]+/)+-[\w-]+): ", message)
        if m:
            typed = [o for o in m.group(1).split("/") if o in getattr(self, "_argv", ())]
            if len(typed) == 1:
                message = f"argument {typed[0]}: " + message[m.end():]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _message(e: BaseException) -> str:
    """``e`` as one line: its message's lines joined; an OS error as ``<file>: <reason>``."""
    if isinstance(e, OSError) and not isinstance(e, MriLensError) and e.strerror:
        names = [n for n in (e.filename, e.filename2) if n is not None]
        return _one_line(f"{' -> '.join(map(str, names))}: {e.strerror}" if names else e.strerror)
    return _one_line(str(e)) or type(e).__name__


# ---------------------------------------------------------------------------------------------- argument types
def _int_at_least(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {v}")
        return v

    parse.__name__ = f"int_at_least_{minimum}"
    return parse


positive_int = _int_at_least(1, "a positive integer (1 or more)")
non_negative_int = _int_at_least(0, "0 or more")


def n_jobs(text: str) -> int:
    """A worker count: 1 or more, or negative (-1: every core, -2: all but one...); never 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v == 0:
        raise argparse.ArgumentTypeError("must be a number of worker processes (1 or more, or -1 for every core), "
                                         "got 0")
    return v


def finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def quantile(text: str) -> float:
    v = finite_float(text)
    if not 0.5 < v < 1:
        raise argparse.ArgumentTypeError(f"must be a quantile in (0.5, 1), e.g. 0.999; got {text!r}")
    return v


_INDEX_PART = re.compile(r"(\d+)(?:-(\d+))?\Z")
_NEGATIVE_PART = re.compile(r"-?\d+(?:-{1,2}\d+)?\Z")


def _index_list(what: str):
    """``0,1`` or ``0-3`` or ``0-3,7``: a list of non-negative ``what`` numbers (ranges inclusive)."""
    example = "(e.g. 0,1 or 0-3)"

    def parse(spec: str) -> list[int]:
        if not spec.strip():
            raise argparse.ArgumentTypeError(f"empty {what} list: give {what} numbers {example}")
        out: list[int] = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                raise argparse.ArgumentTypeError(f"{spec!r} has an empty part: separate {what} numbers by single "
                                                 f"commas {example}")
            m = _INDEX_PART.match(part)
            if m is None:
                if _NEGATIVE_PART.match(part):
                    raise argparse.ArgumentTypeError(f"{part}: {what} numbers must not be negative")
                raise argparse.ArgumentTypeError(f"{spec!r} is not a {what} list {example}")
            a = int(m[1])
            b = a if m[2] is None else int(m[2])
            if a > b:
                raise argparse.ArgumentTypeError(f"{part}: a range's start must not be above its end "
                                                 f"(did you mean {b}-{a}?)")
            if b >= _MAX_INDEX:
                raise argparse.ArgumentTypeError(f"{b} is too large for a {what} number")
            out.extend(range(a, b + 1))
        return out

    parse.__name__ = f"{what}_list"
    return parse


layer_list = _index_list("layer")
neuron_list = _index_list("neuron")


def pooling_list(spec: str) -> tuple[str, ...]:
    """``mean,max``: one or more of :data:`POOLINGS`, each once."""
    out: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise argparse.ArgumentTypeError(f"{spec!r} has an empty part: give poolings separated by commas, "
                                             f"among {','.join(POOLINGS)}")
        if part not in POOLINGS:
            raise argparse.ArgumentTypeError(f"unknown pooling {part!r}; choose from {','.join(POOLINGS)}")
        if part in out:
            raise argparse.ArgumentTypeError(f"pooling {part!r} is given twice")
        out.append(part)
    return tuple(out)


def name_list(spec: str) -> tuple[str, ...]:
    """``a,b``: label names, comma separated, none empty."""
    parts = [p.strip() for p in spec.split(",")]
    if not any(parts) or not all(parts):
        raise argparse.ArgumentTypeError(f"{spec!r} has an empty name: give label names separated by commas")
    return tuple(parts)


def _model(name: str, device: str | None, backend: str | None = None):
    from .model.bundled import load_named_model

    return load_named_model(name, device=device, **({"backend": backend} if backend else {}))


def _corpus(path: str, text: str, label: str | None):
    from .data.corpus import Corpus

    if path.lower().endswith((".jsonl", ".ndjson")):
        return Corpus.from_jsonl(path, text=text, label=label)
    return Corpus.from_csv(path, text=text, label=label)


def _scan_and_model(args):
    """The saved scan of ``--scan`` and the model it was made with (``--model``, default: the scan's model id)."""
    from .results.scan import Scan

    s = Scan.load(args.scan)
    return s, _model(args.model or s.meta.get("model_id") or "", args.device)


def cmd_scan(args) -> int:
    """Scan a corpus into ``--out``: shards written as they finish, so a killed scan resumes when run again."""
    from .model.bundled import ModelSpec
    from .scanning.run import scan

    out = check_save_target(args.out, "mri_lens.scan", overwrite=args.force)
    corpus = _corpus(args.corpus, args.text_col, args.label_col)
    if args.engine == "ray":  # every worker loads the model from its name
        model = ModelSpec(args.model, backend=args.backend or "transformer_lens", device=args.device)
    else:
        model = _model(args.model, args.device, args.backend) if args.backend else _model(args.model, args.device)
    result = scan(model, corpus, layers=args.layers, batch_size=args.batch_size,
                  max_batch_tokens=args.max_batch_tokens or None, max_length=args.max_length, overflow=args.overflow,
                  pooling=args.pooling, top_k=args.top_k, dtype=args.dtype, padding_side=args.padding_side,
                  progress=not args.quiet, out=out, overwrite=args.force, shard_tokens=args.shard_tokens,
                  shard_bytes=args.shard_mb << 20 if args.shard_mb else None,
                  engine=args.engine, workers=args.workers, address=args.address,
                  gpus_per_worker=args.gpus_per_worker, threads_per_worker=args.threads_per_worker)
    run = result.meta.get("run", {})
    print(f"{result!r}\nsaved to {out} ({run.get('computed', 0)} of {run.get('shards', 1)} shards computed now, "
          f"{run.get('resumed', 0)} resumed)")
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


def cmd_demo(args) -> int:
    """MiniLM-L6 on drug reviews: scan, MRI, report; Neuroscope and N2G on the tiny LM (:func:`pipelines.demo`)."""
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
    from .results.scan import Scan

    out = check_save_target(args.out or os.path.join(args.scan, "mri"), "mri_lens.mri_page", overwrite=args.force)
    result = Scan.load(args.scan)
    cats = list(args.categories) if args.categories else None
    if cats:
        if result.labels is None:
            raise CategoryError(f"--categories {','.join(cats)} given but the scan has no labels")
        check_categories(cats, result.label_names, "the scan")
    report, _ = mri_page(result, out, grid=args.grid, mode=args.mode, seed=args.seed, min_weight=args.min_weight,
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
    scan = None
    if args.relative is not None:
        if not args.scan:
            raise ValueError("--relative needs --scan (a saved scan of the same model) to take quantiles from")
        from .results.scan import Scan

        scan = Scan.load(args.scan)
    bins = neuroscope.ColorBins(red=args.red, orange=args.orange if args.orange is not None else args.hi, lo=args.lo)
    model = _model(args.model, args.device)
    view = neuroscope.view(model, prompts, layers=args.layers, hi=args.hi, lo=args.lo, select=args.select,
                      relative=args.relative, relative_to=args.relative_to, scan=scan, sort=args.sort,
                      max_neurons_per_layer=args.max_neurons or None, bins=bins)
    out = view.save_html(out, summary=args.summary, overwrite=args.force)
    print(f"{view!r}\nview written to {out}")
    return 0


def cmd_explain(args) -> int:
    """N2G graphs of a layer's neurons from a saved scan: one JSON per neuron plus a summary table (resumable)."""
    from .lenses.n2g import N2GConfig, explain_layer

    out = check_save_target(args.out, "mri_lens.n2g", overwrite=args.force)
    cfg = N2GConfig(pivots_per_example=args.pivots, end_values=args.end_values, augment_pivots=args.augment,
                    n_substitutes=args.substitutes)
    if args.engine == "ray":
        from .results.scan import Scan

        s = Scan.load(args.scan)
        model = args.model or s.meta.get("model_id") or ""
    else:
        s, model = _scan_and_model(args)
    t0 = time.perf_counter()
    for layer in args.layer:
        graphs = explain_layer(model, s, layer, args.neurons, k=args.top_k, config=cfg, seed=args.seed,
                               out_dir=out, evaluate=not args.no_eval, progress=not args.quiet,
                               augmenter=args.augmenter, overwrite=args.force, engine=args.engine,
                               workers=args.workers, address=args.address)
        print(f"{graphs!r}")
        table = graphs.table()
        if len(table):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"N2G graphs written to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_site(args) -> int:
    from .lenses import neuroscope

    out = check_save_target(args.out, "mri_lens.site", overwrite=args.force)
    s, model = _scan_and_model(args)
    t0 = time.perf_counter()
    index = neuroscope.site(s, model, out, layers=args.layers, neurons=args.neurons, k=args.top_k,
                            overwrite=args.force)
    print(f"site written to {index} in {time.perf_counter() - t0:.1f} s (open it in a browser; works offline)")
    return 0


# ---------------------------------------------------------------------------------------------- the parser
def _force_arg(p: argparse.ArgumentParser, *, file: bool = False) -> None:
    p.add_argument("--force", action="store_true", help=_FORCE_FILE_HELP if file else _FORCE_HELP)


def _scan_model_args(p: argparse.ArgumentParser) -> None:
    """The arguments :func:`_scan_and_model` reads."""
    p.add_argument("--scan", required=True)
    p.add_argument("--model", default=None, help="the scanned model (default: the scan's model id)")
    p.add_argument("--device", default=None)


def _examples_arg(p: argparse.ArgumentParser, *, minimum: int = 1, what: str = "a positive integer (1 or more)",
                  help: str = "top examples per neuron", old_spelling: bool = True) -> None:
    """Examples per neuron: ``--top-k`` on every command (``--k``, the old spelling of site/explain, still works)."""
    names = ("--top-k", "--k") if old_spelling else ("--top-k",)
    p.add_argument(*names, dest="top_k", type=_int_at_least(minimum, what), default=20, help=help)


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="'ray': an actor pool of model replicas on a Ray cluster (pip install 'mri-lens[ray]')")
    p.add_argument("--workers", type=positive_int, default=2, help="Ray actors (model replicas)")
    p.add_argument("--address", default=None, help="Ray cluster address, e.g. auto (default: a local cluster)")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="mri-lens", description="Neuron-level lenses for TransformerLens models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    s = sub.add_parser("scan", help="scan a corpus into a directory (resumable: run it again after a kill)")
    s.add_argument("--model", required=True, help="TL/hub name, local HF directory, 'tiny' or 'minilm'")
    s.add_argument("--backend", choices=("transformer_lens", "hf"), default=None,
                   help="load the model with TransformerLens (default) or as a plain Hugging Face model")
    s.add_argument("--corpus", required=True, help="CSV, TSV or JSONL file")
    s.add_argument("--text-col", default="text")
    s.add_argument("--label-col", default=None)
    s.add_argument("--out", required=True, help="output directory (checked before any work)")
    s.add_argument("--layers", type=layer_list, default=None, help="e.g. 0,1 or 0-3 (default: all)")
    s.add_argument("--batch-size", type=positive_int, default=32)
    s.add_argument("--max-batch-tokens", type=non_negative_int, default=2048, help="0: no limit")
    s.add_argument("--max-length", type=positive_int, default=None)
    s.add_argument("--overflow", choices=("truncate", "windows", "error"), default="truncate")
    s.add_argument("--pooling", type=pooling_list, default=("mean", "max"),
                   help=f"comma separated, among {','.join(POOLINGS)} (default: mean,max)")
    _examples_arg(s, help="top (and bottom) examples kept per neuron", old_spelling=False)
    s.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    s.add_argument("--padding-side", choices=("right", "left"), default="right")
    s.add_argument("--shard-tokens", type=positive_int, default=None,
                   help="counted tokens per shard (default 1048576): a kill loses at most the shards in flight")
    s.add_argument("--shard-mb", type=positive_int, default=None,
                   help="pooled values a worker holds per shard, in MiB (default 256): bounds memory")
    _engine_args(s)
    s.add_argument("--gpus-per-worker", type=finite_float, default=None,
                   help="GPUs per Ray actor (default: 1 where the cluster has GPUs)")
    s.add_argument("--threads-per-worker", type=positive_int, default=1, help="torch threads per CPU actor")
    s.add_argument("--device", default=None)
    s.add_argument("--quiet", action="store_true")
    _force_arg(s)
    s.set_defaults(func=cmd_scan)

    r = sub.add_parser("report", help="offline HTML report of a saved scan")
    r.add_argument("--scan", required=True)
    r.add_argument("--out", default=None, help="output HTML file (default: <scan>/report.html)")
    r.add_argument("--categories", type=name_list, default=None, help="two label names, comma separated")
    _force_arg(r, file=True)
    r.set_defaults(func=cmd_report)

    d = sub.add_parser("demo", help="MiniLM-L6 on drug reviews, end to end, offline")
    d.add_argument("--out", default="mri_lens_demo")
    d.add_argument("--limit", type=positive_int, default=None, help="use only the first N reviews")
    d.add_argument("--batch-size", type=positive_int, default=32)
    d.add_argument("--device", default=None)
    d.add_argument("--quiet", action="store_true")
    _force_arg(d)
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("compile", help="JIT-compile the numba kernels once (make setup runs it), so a new "
                                       "environment's first scan and first region map do not wait for it")
    c.set_defaults(func=cmd_compile)

    n = sub.add_parser("neuroscope", help="thresholded token view of prompts across layers (offline HTML)")
    n.add_argument("--model", required=True, help="TL/hub name, local HF directory, 'tiny' or 'minilm'")
    n.add_argument("--prompt", action="append", default=None,
                   help="a prompt (repeat for several; default: the in-context sequence prompts)")
    n.add_argument("--out", required=True, help="output HTML file")
    n.add_argument("--layers", type=layer_list, default=None, help="e.g. 0,1 or 0-3 (default: all)")
    n.add_argument("--hi", type=finite_float, default=3.0)
    n.add_argument("--lo", type=finite_float, default=0.0)
    n.add_argument("--select", choices=("hi", "lo", "either"), default="hi")
    n.add_argument("--relative", type=quantile, default=None, help="quantile, e.g. 0.999 (needs --scan)")
    n.add_argument("--relative-to", choices=("neuron", "layer"), default="neuron")
    n.add_argument("--scan", default=None, help="saved scan of the same model, for --relative")
    n.add_argument("--sort", choices=("max", "coverage"), default="max")
    n.add_argument("--max-neurons", type=non_negative_int, default=50, help="per layer (0: no cap)")
    n.add_argument("--red", type=finite_float, default=3.5, help="colour bin: red above this")
    n.add_argument("--orange", type=finite_float, default=None, help="colour bin: orange above this (default: --hi)")
    n.add_argument("--summary", action="store_true", help="add the layer progression figure (plotly inlined)")
    n.add_argument("--device", default=None)
    _force_arg(n, file=True)
    n.set_defaults(func=cmd_neuroscope)

    m = sub.add_parser("mri", help="MRI lens of a saved scan: region maps, co-activation graph, report")
    m.add_argument("--scan", required=True)
    m.add_argument("--out", default=None, help="output directory (default: <scan>/mri)")
    m.add_argument("--grid", type=positive_int, default=10, help="n: regions form an n x n grid")
    m.add_argument("--mode", choices=("neurons", "documents"), default="neurons")
    m.add_argument("--seed", type=non_negative_int, default=0)
    m.add_argument("--min-weight", type=non_negative_int, default=5,
                   help="drop edges with fewer co-activating documents")
    m.add_argument("--top-edges", "--top-k", dest="top_edges", type=non_negative_int, default=3,
                   help="keep an edge only if it is among the k heaviest out-edges of its source or in-edges of its "
                        "target (0: keep all; --top-k is the old spelling)")
    m.add_argument("--categories", type=name_list, default=None, help="label names to contrast, comma separated")
    m.add_argument("--n-jobs", type=n_jobs, default=-1, help="worker processes for the per-layer maps (-1: all cores)")
    m.add_argument("--quiet", action="store_true")
    _force_arg(m)
    m.set_defaults(func=cmd_mri)

    t = sub.add_parser("site", help="offline static Neuroscope site (neuron pages) of a saved scan")
    _scan_model_args(t)
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--layers", type=layer_list, default=None, help="e.g. 0,1 or 0-3 (default: every scanned layer)")
    t.add_argument("--neurons", type=neuron_list, default=None, help="e.g. 0-99 (default: all)")
    _examples_arg(t)
    _force_arg(t)
    t.set_defaults(func=cmd_site)

    e = sub.add_parser("explain", help="N2G graphs (token patterns) of neurons from a saved scan")
    _scan_model_args(e)
    e.add_argument("--layer", type=layer_list, required=True, help="e.g. 0, or 0-3 for several layers")
    e.add_argument("--neurons", type=neuron_list, default=None, help="e.g. 0-63 (default: all)")
    e.add_argument("--out", required=True, help="output directory (L<layer>/N<neuron>.json, summary.csv)")
    _examples_arg(e, minimum=2, what="at least 2 (train and test examples)",
                  help="top examples per neuron (half train, half test)")
    e.add_argument("--pivots", type=positive_int, default=1, help="pivots per example (1: the paper's method)")
    e.add_argument("--end-values", choices=("firing", "calibrated"), default="firing",
                   help="END node values: 'firing' (the paper) or 'calibrated' on the whole training examples")
    e.add_argument("--augment", choices=("main", "all"), default="main",
                   help="windows augmented: each example's main pivot's (the paper) or every pivot's")
    e.add_argument("--augmenter", choices=("embedding", "probe", "none"), default="embedding",
                   help="substitutes: nearest tokens in the model's embedding (default), the tokens the neuron "
                        "itself ranks highest when run alone ('probe'), or no augmentation")
    e.add_argument("--substitutes", type=non_negative_int, default=5,
                   help="substitutes per important token (the paper: 5)")
    e.add_argument("--seed", type=non_negative_int, default=0)
    e.add_argument("--no-eval", action="store_true", help="skip the held-out scoring")
    _engine_args(e)
    e.add_argument("--quiet", action="store_true")
    _force_arg(e)
    e.set_defaults(func=cmd_explain)
    return p


def _quiet_libraries() -> None:
    """``--quiet``: no progress bars from the libraries either (transformers' and the hub's loading bars)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Run one command. Returns the exit status: 0, 2 for a user mistake (one line on stderr, no traceback), 130
    for Ctrl-C. Other exceptions are bugs and propagate with their traceback."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # --help (0) or an argument error (2, already printed on one line)
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        if getattr(args, "quiet", False):
            _quiet_libraries()
        return args.func(args)
    except KeyboardInterrupt:
        print("mri-lens: interrupted", file=sys.stderr)
        return 130
    except (MriLensError, ValueError, OSError) as e:  # MriLensError, UnicodeDecodeError, missing files, permissions
        print(f"mri-lens: error: {_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
