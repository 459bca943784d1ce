"""The ``mri-lens`` command line's arguments: value types that check what they parse, and the parser.

Every argument error is one line, ``mri-lens <cmd>: error: ...`` with exit status 2, before any model loads. Each
sub-command sets ``command`` (its name); :mod:`mri_lens.cli` runs it.
"""

from __future__ import annotations

import argparse
import math
import re

from .scanning.options import POOLINGS

_MAX_INDEX = 10_000_000  # larger layer / neuron numbers are typos (and would build huge lists)
_FORCE_HELP = "write even if the output path holds other files; files mri_lens did not write are never removed"
_FORCE_FILE_HELP = "replace the file at --out even if mri_lens did not write it"


def one_line(text: str) -> str:
    """``text`` with its lines joined by single spaces."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


class ArgumentParser(argparse.ArgumentParser):
    """argparse with every error on one line, ``<prog>: error: <message>``, exit status 2 (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


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


def _float_above(minimum: float, strict: bool, what: str):
    def parse(text: str) -> float:
        v = finite_float(text)
        if v < minimum or (strict and v == minimum):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return v

    parse.__name__ = f"float_above_{minimum}"
    return parse


non_negative_float = _float_above(0.0, False, "a number >= 0")
positive_float = _float_above(0.0, True, "a positive number")


# ---------------------------------------------------------------------------------------------- the parser
def _force_arg(p: argparse.ArgumentParser, *, file: bool = False) -> None:
    p.add_argument("--force", action="store_true", help=_FORCE_FILE_HELP if file else _FORCE_HELP)


def _scan_model_args(p: argparse.ArgumentParser) -> None:
    """The arguments :func:`_scan_and_model` reads."""
    p.add_argument("--scan", required=True)
    p.add_argument("--model", default=None, help="the scanned model (default: the scan's model id)")
    p.add_argument("--device", default=None)


def _examples_arg(p: argparse.ArgumentParser, *, minimum: int = 1, what: str = "a positive integer (1 or more)",
                  help: str = "top examples per neuron") -> None:
    """Examples per neuron: ``--top-k`` on every command."""
    p.add_argument("--top-k", dest="top_k", type=_int_at_least(minimum, what), default=20, help=help)


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="'ray': an actor pool of model replicas on a Ray cluster (pip install 'mri-lens[ray]')")
    p.add_argument("--workers", type=positive_int, default=2, help="Ray actors (model replicas)")
    p.add_argument("--address", default=None, help="Ray cluster address, e.g. auto (default: a local cluster)")


def _ray_scan_args(p: argparse.ArgumentParser) -> None:
    """The Ray engine's settings a scan takes besides :func:`_engine_args` (mri_lens.RayEngine's fields)."""
    p.add_argument("--gpus-per-worker", type=non_negative_float, default=None,
                   help="GPUs per Ray actor (default: 1 where the cluster has GPUs)")
    p.add_argument("--threads-per-worker", type=positive_int, default=1, help="torch threads per CPU actor")
    p.add_argument("--max-attempts", type=positive_int, default=3,
                   help="starts of one shard before a worker that dies on it each time fails the scan")
    p.add_argument("--connect-timeout", type=positive_float, default=60.0,
                   help="seconds to reach --address before giving up")


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
    s.add_argument("--units", default=None, help="what to scan: MLP neurons (default), hidden_states (Hugging "
                   "Face's numbering: 0 = embeddings), a hook kind (resid_post, attn_z, embed...), sae:LAYER=DIR or transcoder:LAYER=DIR (SAELens directories)")
    s.add_argument("--batch-size", type=positive_int, default=32)
    s.add_argument("--max-batch-tokens", type=non_negative_int, default=2048, help="0: no limit")
    s.add_argument("--max-length", type=positive_int, default=None)
    s.add_argument("--overflow", choices=("truncate", "windows", "error"), default="truncate")
    s.add_argument("--pooling", type=pooling_list, default=("mean", "max"),
                   help=f"comma separated, among {','.join(POOLINGS)} (default: mean,max)")
    _examples_arg(s, help="top (and bottom) examples kept per neuron (at most the corpus's documents)")
    s.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    s.add_argument("--padding-side", choices=("right", "left"), default="right")
    s.add_argument("--shard-tokens", type=positive_int, default=None,
                   help="counted tokens per shard (default 1048576): a kill loses at most the shards in flight")
    s.add_argument("--shard-mb", type=positive_int, default=None,
                   help="pooled values a worker holds per shard, in MiB (default 256): bounds memory")
    _engine_args(s)
    _ray_scan_args(s)
    s.add_argument("--device", default=None)
    s.add_argument("--quiet", action="store_true")
    _force_arg(s)
    s.set_defaults(command="scan")

    r = sub.add_parser("report", help="offline HTML report of a saved scan")
    r.add_argument("--scan", required=True)
    r.add_argument("--out", default=None, help="output HTML file (default: <scan>/report.html)")
    r.add_argument("--categories", type=name_list, default=None, help="two label names, comma separated")
    _force_arg(r, file=True)
    r.set_defaults(command="report")

    f = sub.add_parser("find", help="neurons of a saved scan ranked by a token, density, max or selectivity")
    f.add_argument("--scan", required=True)
    f.add_argument("--token", action="append", default=None,
                   help="a token as the scan shows it, e.g. ' except' (repeat for a token set)")
    f.add_argument("--by", choices=("share", "max", "density", "selectivity"), default=None,
                   help="the ranking (default: share of top examples for --token, else max)")
    f.add_argument("--layers", type=layer_list, default=None, help="e.g. 0,1 or 0-3 (default: all)")
    f.add_argument("--limit", type=positive_int, default=50)
    f.add_argument("--csv", default=None, help="write the table to this CSV file instead of printing it")
    f.set_defaults(command="find")

    d = sub.add_parser("demo", help="MiniLM-L6 on drug reviews, end to end, offline")
    d.add_argument("--out", default="mri_lens_demo")
    d.add_argument("--limit", type=positive_int, default=None, help="use only the first N reviews")
    d.add_argument("--batch-size", type=positive_int, default=32)
    d.add_argument("--device", default=None)
    d.add_argument("--quiet", action="store_true")
    _force_arg(d)
    d.set_defaults(command="demo")

    c = sub.add_parser("compile", help="JIT-compile the numba kernels once (make setup runs it), so a new "
                                       "environment's first scan and first region map do not wait for it")
    c.set_defaults(command="compile")

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
    n.set_defaults(command="neuroscope")

    m = sub.add_parser("mri", help="MRI lens of a saved scan: region maps, co-activation graph, report")
    m.add_argument("--scan", required=True)
    m.add_argument("--out", default=None, help="output directory (default: <scan>/mri)")
    m.add_argument("--grid", type=positive_int, default=10, help="n: regions form an n x n grid")
    m.add_argument("--mode", choices=("neurons", "documents"), default="neurons")
    m.add_argument("--reducer", choices=("umap", "pca", "svd"), default="umap",
                   help="how each layer is reduced (default: umap)")
    m.add_argument("--components", type=positive_int, default=2,
                   help="components per layer: 2 gives the grid and its co-activation graph; more give LLM-MRI's "
                        "component graph (Spearman between neighbouring layers' components; --mode documents)")
    m.add_argument("--units", default=None,
                   help="the units the scan must hold (hidden_states, resid_post, mlp_post...): they are chosen when "
                        "scanning (mri-lens scan --units); a scan of other units is refused")
    m.add_argument("--scaling", choices=("zscore", "minmax", "none"), default="zscore",
                   help="feature scaling before the reduction (default: zscore)")
    m.add_argument("--pooling", choices=POOLINGS, default=None,
                   help="which pooled activation of the scan (default: mean when the scan kept it; 'first' is "
                        "[CLS] / the first token after BOS)")
    m.add_argument("--threshold", type=finite_float, default=0.3,
                   help="component graph: keep an edge when |Spearman rho| > this (default 0.3)")
    m.add_argument("--positive-only", action="store_true",
                   help="component graph: keep only rho > --threshold (LLM-MRI's rule)")
    m.add_argument("--seed", type=non_negative_int, default=0)
    m.add_argument("--min-weight", type=non_negative_int, default=5,
                   help="drop edges with fewer co-activating documents")
    m.add_argument("--top-edges", type=non_negative_int, default=3,
                   help="keep an edge only if it is among the k heaviest out-edges of its source or in-edges of its "
                        "target (0: keep all)")
    m.add_argument("--categories", type=name_list, default=None, help="label names to contrast, comma separated")
    m.add_argument("--n-jobs", type=n_jobs, default=-1, help="worker processes for the per-layer maps (-1: all cores)")
    m.add_argument("--quiet", action="store_true")
    _force_arg(m)
    m.set_defaults(command="mri")

    t = sub.add_parser("site", help="offline static Neuroscope site (neuron pages) of a saved scan")
    _scan_model_args(t)
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--layers", type=layer_list, default=None, help="e.g. 0,1 or 0-3 (default: every scanned layer)")
    t.add_argument("--neurons", type=neuron_list, default=None, help="e.g. 0-99 (default: all)")
    t.add_argument("--n2g", default=None, metavar="DIR",
                   help="the --out of mri-lens explain: each explained neuron's graph and scores on its page")
    _examples_arg(t)
    _force_arg(t)
    t.set_defaults(command="site")

    e = sub.add_parser("explain", help="N2G graphs (token patterns) of neurons from a saved scan")
    _scan_model_args(e)
    e.add_argument("--layer", type=layer_list, required=True, help="e.g. 0, or 0-3 for several layers")
    e.add_argument("--neurons", type=neuron_list, default=None, help="e.g. 0-63 (default: all)")
    e.add_argument("--out", required=True, help="output directory (L<layer>/N<neuron>.json, summary.csv, and the "
                                                 "pages: index.html, L<layer>/index.html)")
    _examples_arg(e, minimum=2, what="at least 2 (train and test examples)",
                  help="top examples per neuron (half train, half test)")
    e.add_argument("--paper", action="store_true",
                   help="the paper's method (N2GConfig.paper()) instead of the measured default (N2GConfig())")
    e.add_argument("--pivots", type=positive_int, default=None, help="pivots per example (default 20; the paper: 1)")
    e.add_argument("--end-values", choices=("firing", "calibrated"), default=None,
                   help="END node values: 'calibrated' on the whole training examples (default) or 'firing' (the "
                        "paper)")
    e.add_argument("--augment", choices=("main", "all"), default=None,
                   help="windows augmented: each example's main pivot's (default, the paper) or every pivot's")
    e.add_argument("--augmenter", choices=("embedding", "probe", "none"), default=None,
                   help="substitutes: the tokens the neuron itself ranks highest when run alone ('probe', default), "
                        "nearest tokens in the model's embedding (the paper), or no augmentation")
    e.add_argument("--substitutes", type=non_negative_int, default=None,
                   help="substitutes per important token (default 10; the paper: 5)")
    e.add_argument("--fallback", choices=("none", "token", "mean"), default=None,
                   help="what a token no pattern covers predicts: its token-lookup value (default), the mean, or "
                        "0 (the paper)")
    e.add_argument("--seed", type=non_negative_int, default=0)
    e.add_argument("--no-eval", action="store_true", help="skip the held-out scoring")
    _engine_args(e)
    e.add_argument("--quiet", action="store_true")
    _force_arg(e)
    e.set_defaults(command="explain")
    return p
