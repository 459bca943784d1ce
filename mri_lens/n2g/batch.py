"""Many neurons at once: ``explain_layer`` (batched, resumable, saved) and the pieces other lenses show."""

from __future__ import annotations

import html
import json
import os
import time
from typing import Any, Sequence

import numpy as np

from .._io import claim_dir, page_marker, write_text_atomic
from ..errors import ScanError
from .augment import Augmenter, get_augmenter
from .config import N2GConfig
from .evaluate import score_activations, summary_table
from .fit import Forward, Prompt, check_causal, default_mask_token, fit_tries, split_examples
from .graph import NeuronGraph, example_prompts

__all__ = ["LayerGraphs", "explain_layer", "load_layer", "demo_section", "site_section", "scan_text"]


class LayerGraphs(dict):
    """``{neuron: NeuronGraph}`` of one layer, plus what it cost.

    Attributes: ``layer``; ``skipped`` ``{neuron: reason}`` (dead neurons); ``cost``: forward calls and tokens of
    the fits (``fit_*``) and evaluations (``eval_*``) run by this call, ``neurons_fitted``, ``seconds``.
    """

    def __init__(self, layer: int, *args: Any) -> None:
        super().__init__(*args)
        self.layer = int(layer)
        self.skipped: dict[int, str] = {}
        self.cost: dict[str, Any] = {}

    def table(self):
        """Per-layer summary (:func:`mri_lens.n2g.summary_table`)."""
        return summary_table(self.values())

    def neuron_table(self):
        """One row per neuron: firing P/R/F1, non-firing F1 and correlation of N2G and the baselines."""
        import pandas as pd

        return pd.DataFrame([_neuron_row(g) for g in self.values()])

    def __repr__(self) -> str:
        return (f"LayerGraphs(layer={self.layer}, neurons={len(self)}, skipped={len(self.skipped)}, "
                f"fit_forward_calls={self.cost.get('fit_forward_calls')})")


N2G_DIR_KIND = "mri_lens.n2g"  # the manifest format of an explain_layer output directory


def _neuron_row(g: NeuronGraph) -> dict[str, Any]:
    row: dict[str, Any] = {"layer": g.layer, "neuron": g.neuron, "max_activation": g.max_activation,
                           "paths": len(g.trie.paths()),
                           "activating": " ".join(repr(t)[1:-1] for t in g.activating_tokens()[:8])}
    s = g.scores or {}
    row["no_firing_test_token"] = s.get("no_firing_test_token")
    for m in ("n2g", "token", "ngram"):
        for k in ("firing_precision", "firing_recall", "firing_f1", "nonfiring_f1", "correlation"):
            row[f"{m}_{k}"] = s.get(m, {}).get(k)
    return row


def scan_text(scan: Any, doc: int, n_prefix: int, width: int | None = None) -> tuple[int, ...]:
    """Text token ids (special prefix removed) of the first window of a scanned document."""
    toks = scan.tokens(int(doc))
    width = int(width or scan.meta.get("max_length") or len(toks))
    return tuple(int(t) for t in toks[n_prefix:width])


def _path(out_dir: str, layer: int, neuron: int) -> str:
    return os.path.join(out_dir, f"L{layer}", f"N{neuron}.json")


def explain_layer(model: Any, scan: Any, layer: int, neurons: Sequence[int] | None = None, *, k: int = 20,
                  config: N2GConfig | None = None, seed: int = 0, augmenter: Augmenter | str | None = None,
                  out_dir: str | os.PathLike | None = None, evaluate: bool = True, n_random: int | None = None,
                  min_activation: float = 0.0, chunk_size: int = 64, backend: Any = None,
                  progress: bool = True, overwrite: bool = False) -> LayerGraphs:
    """Fit (and score) the N2G graphs of many neurons of one layer, batched across examples and neurons.

    Each chunk of ``chunk_size`` neurons is fitted together: every forward pass of a stage (prune candidates,
    masked prompts, augmented variants) carries the prompts of all of them, and stops after ``layer``.

    Parameters
    ----------
    model: the scanned causal model.
    scan: its :class:`~mri_lens.Scan` (top examples, dataset max per neuron, random documents).
    layer: model layer number (must be in the scan).
    neurons: neuron ids (default: all).
    k: top examples per neuron, split ``config.train_proportion`` train / rest test with ``seed``.
    augmenter: as in :meth:`NeuronGraph.fit` (``None``: embedding neighbours; ``"probe"``; ``"none"``).
    evaluate: score each graph on its held-out examples plus ``n_random`` random documents (default: as many as
        test examples), with the token-lookup and n-gram baselines; stored in ``graph.scores``.
    out_dir: save ``L{layer}/N{neuron}.json`` per neuron and ``L{layer}/summary.json`` / ``summary.csv``.
        Resumable: neurons whose file exists are loaded, not refitted. The directory must be free, empty or an
        N2G output directory (its ``manifest.json`` says so); anything else is refused before any fitting
        unless ``overwrite=True`` (files mri_lens did not write are never removed).
    min_activation: neurons whose top activation is not above this are skipped as dead.

    Returns
    -------
    :class:`LayerGraphs` ``{neuron: NeuronGraph}``.
    """
    from tqdm.auto import tqdm

    from ..adapter import as_adapter
    from ..capture import get_backend

    cfg = config or N2GConfig()
    adapter = as_adapter(model)
    check_causal(adapter)
    li = scan.layer_index(layer)
    layer = int(layer)
    if adapter.d_mlp is not None and int(adapter.d_mlp) != scan.d_mlp:
        raise ScanError(f"the model has d_mlp={adapter.d_mlp} but the scan has {scan.d_mlp}: pass the scanned model")
    ids = list(range(scan.d_mlp)) if neurons is None else sorted({int(n) for n in neurons})
    if not ids or ids[0] < 0 or ids[-1] >= scan.d_mlp:
        raise ValueError(f"neurons must be a non-empty selection of 0..{scan.d_mlp - 1}")
    if k < 2:
        raise ValueError(f"k must be at least 2 (train and test examples), got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    aug = get_augmenter(augmenter)
    mask = cfg.mask_token if cfg.mask_token is not None else default_mask_token(adapter)
    width = int(scan.meta.get("max_length") or adapter.n_ctx)
    n_prefix = adapter.n_special_prefix
    if out_dir is not None:
        out_dir = claim_dir(out_dir, N2G_DIR_KIND, overwrite=overwrite)
    result = LayerGraphs(layer)
    todo = []
    for n in ids:
        top = float(scan.top.values[li, n, 0]) if scan.top.docs[li, n, 0] >= 0 else float("nan")
        if not top > min_activation:
            result.skipped[n] = f"dead (top activation {top:.4g} <= {min_activation})"
            continue
        if out_dir is not None and os.path.exists(_path(out_dir, layer, n)):
            try:
                result[n] = NeuronGraph.load(_path(out_dir, layer, n), adapter.model, follow_symlinks=False)
                continue
            except Exception:  # noqa: BLE001 - a damaged file is simply refitted
                pass
        todo.append(n)
    cap = get_backend(adapter, backend)
    fit_run = Forward(adapter, cap, layer, cfg.max_batch_tokens)
    eval_run = Forward(adapter, cap, layer, cfg.max_batch_tokens)
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"N2G layer {layer}", unit="neuron", disable=not progress, leave=False)
    for c in range(0, len(todo), chunk_size):
        chunk = todo[c:c + chunk_size]
        jobs, splits = [], {}
        for n in chunk:
            prompts = example_prompts(scan.top_examples(layer, n, k), adapter, window=width)
            norm = float(scan.stats.max[li, n])
            train, test = split_examples(len(prompts), cfg.train_proportion, np.random.default_rng([seed, layer, n]))
            splits[n] = (prompts, train, test, norm)
            jobs.append((n, norm, [Prompt(prompts[i].ids, prompts[i].pivot, prompts[i].doc) for i in train]))
        before = fit_run.counts()
        fitted = fit_tries(fit_run, jobs, cfg, aug, mask)
        share = {key: (v - before[key]) / len(chunk) for key, v in fit_run.counts().items()}
        share["neurons_sharing"] = len(chunk)
        graphs = {}
        for n, (trie, st) in zip(chunk, fitted):
            prompts, train, test, norm = splits[n]
            graphs[n] = NeuronGraph._build(adapter, layer, n, trie, st, cfg, aug, mask, norm, prompts, train, test,
                                           seed, share)
        if evaluate:
            _evaluate_chunk(graphs, splits, scan, eval_run, n_random, seed, layer, n_prefix, width)
        for n in chunk:
            result[n] = graphs[n]
            if out_dir is not None:  # inside the directory claimed above: its files are ours to replace
                write_text_atomic(_path(out_dir, layer, n), graphs[n].to_json())
        bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - t0
    fc, ec = fit_run.counts(), eval_run.counts()
    result.cost = {"neurons_fitted": len(todo), "seconds": seconds,
                   **{f"fit_{key}": v for key, v in fc.items()}, **{f"eval_{key}": v for key, v in ec.items()}}
    if out_dir is not None:
        _write_summary(out_dir, result)
    return result


def _evaluate_chunk(graphs, splits, scan, run: Forward, n_random, seed, layer, n_prefix, width) -> None:
    """Held-out, random and training texts of every neuron of the chunk in one pooled set of forwards."""
    req, spans = [], {}
    rand = {}
    for n, g in graphs.items():
        prompts, train, test, _ = splits[n]
        m = len(test) if n_random is None else int(n_random)
        excl = {p.doc for p in prompts}
        pool = np.array([d for d in range(scan.n_docs) if d not in excl])
        pick = np.random.default_rng([seed, layer, n, 2]).choice(pool, size=min(m, len(pool)), replace=False) \
            if m and len(pool) else []
        rand[n] = [scan_text(scan, int(d), n_prefix, width) for d in sorted(int(x) for x in pick)]
        rand[n] = [r for r in rand[n] if r]
        g.examples["random_docs"] = sorted(int(x) for x in pick)
        seqs = [prompts[i].ids for i in test] + rand[n] + [prompts[i].ids for i in train]
        spans[n] = (len(req), len(test), len(rand[n]), len(train))
        req.extend((s, n) for s in seqs)
    acts = run(req)
    for n, g in graphs.items():
        prompts, train, test, _ = splits[n]
        a, nt, nr, ntr = spans[n]
        ta, ra, tra = acts[a:a + nt], acts[a + nt:a + nt + nr], acts[a + nt + nr:a + nt + nr + ntr]
        if not nt:
            g.scores = None
            continue
        g.scores = score_activations(g, [prompts[i].ids for i in test], ta, rand[n], ra,
                                     [prompts[i].ids for i in train], tra)


def _write_summary(out_dir: str, result: LayerGraphs) -> None:
    rows = [_neuron_row(result[n]) for n in sorted(result)]
    table = result.table()
    doc = {"format": "mri_lens.n2g.summary", "schema_version": 1, "layer": result.layer,
           "neurons": rows, "skipped": {str(k): v for k, v in sorted(result.skipped.items())},
           "layer_table": json.loads(table.to_json(orient="records")) if len(table) else [],
           "cost": {k: v for k, v in result.cost.items() if k != "seconds"}}
    base = os.path.join(out_dir, f"L{result.layer}")
    write_text_atomic(os.path.join(base, "summary.json"), json.dumps(doc, indent=1, sort_keys=True, default=_num))
    import pandas as pd

    write_text_atomic(os.path.join(base, "summary.csv"), pd.DataFrame(rows).to_csv(index=False))


def _num(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x).__name__)


def load_layer(out_dir: str | os.PathLike, layer: int, model: Any = None) -> LayerGraphs:
    """Every ``L{layer}/N*.json`` saved by :func:`explain_layer` under ``out_dir``.

    Raises ``ValueError`` for a negative or non-integer ``layer``, and
    :class:`~mri_lens.errors.ScanFileError` when ``out_dir/L{layer}`` does not exist or a file's name disagrees
    with the layer or neuron stored inside it."""
    from ..errors import ScanFileError

    if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)) or int(layer) < 0:
        raise ValueError(f"layer must be a non-negative integer, got {layer!r}")
    layer = int(layer)
    base = os.path.join(os.fspath(out_dir), f"L{layer}")
    out = LayerGraphs(layer)
    if not os.path.isdir(base):
        raise ScanFileError(f"{base} does not exist or is not a directory: no N2G graphs of layer {layer} were "
                            "saved there (run explain_layer with out_dir first)")
    names = [n for n in os.listdir(base)  # only the names explain_layer writes: N<neuron>.json
             if n.startswith("N") and n.endswith(".json") and n[1:-5].isascii() and n[1:-5].isdigit()
             and n == f"N{int(n[1:-5])}.json"]
    for name in sorted(names, key=lambda n: int(n[1:-5])):
        path = os.path.join(base, name)
        g = NeuronGraph.load(path, model, follow_symlinks=False)
        if g.layer != layer or g.neuron != int(name[1:-5]):
            raise ScanFileError(f"{path}: the file name does not match the layer and neuron stored inside it "
                                f"(expected layer {layer}, neuron {int(name[1:-5])}); rename or remove the file")
        out[g.neuron] = g
    return out


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def scores_html(g: NeuronGraph) -> str:
    """A small table of the graph's scores (N2G and baselines), or a note when it was not evaluated."""
    s = g.scores
    if not s:
        return "<p class='muted'>not evaluated</p>"
    head = ("<table><thead><tr><th>method</th><th>firing P</th><th>firing R</th><th>firing F1</th>"
            "<th>non-firing F1</th><th>correlation</th></tr></thead><tbody>")
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{_fmt(s[m].get('firing_precision'))}</td>"
        f"<td>{_fmt(s[m].get('firing_recall'))}</td><td>{_fmt(s[m].get('firing_f1'))}</td>"
        f"<td>{_fmt(s[m].get('nonfiring_f1'))}</td><td>{_fmt(s[m].get('correlation'))}</td></tr>"
        for m, name in (("n2g", "N2G"), ("token", "token lookup"), ("ngram", f"{g.config.ngram}-gram lookup"))
        if m in s)
    note = (" <b>No firing token in the held-out examples</b>: firing recall and F1 are undefined."
            if s.get("no_firing_test_token") else "")
    return (head + rows + "</tbody></table><p class='muted'>Held out: "
            f"{s['n_test_texts']} top examples ({s['n_test_tokens']} tokens, {s['n_firing_test_tokens']} firing) and "
            f"{s['n_random_texts']} random documents; firing = at least {s['firing_threshold']:g} of the neuron's "
            f"max.{note}</p>")


def site_section(g: NeuronGraph) -> str:
    """HTML for a Neuroscope neuron page: the condensed graph as inline SVG and its scores."""
    return ("<h2>N2G graph</h2><p class='muted'>Token patterns that make the neuron fire (Neuron to Graph): red "
            "nodes fire (darker = stronger), blue nodes are important context before them (darker = more "
            "important), bold outline = a pattern may end here; read right to left from each red node.</p>"
            + g.to_svg() + scores_html(g))


def demo_section(model: Any, scan: Any, out_dir: str | os.PathLike, neurons: Sequence[int], *, layer: int = 0,
                 seed: int = 0, site_prefix: str = "site") -> tuple[dict[tuple[int, int], NeuronGraph],
                                                                  list[tuple[str, str]]]:
    """N2G graphs of a few neurons for ``mri-lens demo``: fitted, scored, saved under ``out_dir/n2g`` with an
    ``index.html`` page. Returns ``({(layer, neuron): graph}, [(link text, url relative to out_dir)])``."""
    from ..site import SITE_CSS

    base = os.path.join(os.fspath(out_dir), "n2g")
    graphs = explain_layer(model, scan, layer, neurons, seed=seed, out_dir=base, progress=False)
    cards = []
    for n, g in sorted(graphs.items()):
        cards.append(f"<h2>Layer {layer}, neuron {n} <a href='../{site_prefix}/L{layer}/N{n}.html'>"
                     f"(Neuroscope page)</a></h2>" + g.to_svg() + scores_html(g))
    table = graphs.table()
    summary = ""
    if len(table):
        r = table.iloc[0]
        summary = (f"<p>Mean firing F1 over {int(r['neurons'])} neurons: N2G {_fmt(r['n2g_firing_f1'])}, token "
                   f"lookup {_fmt(r['token_firing_f1'])}, n-gram lookup {_fmt(r['ngram_firing_f1'])}; "
                   f"correlation N2G {_fmt(r['n2g_correlation'])}.</p>")
    page = (f"<!doctype html>{page_marker()}<html><head><meta charset='utf-8'><title>N2G graphs</title>"
            f"<style>{SITE_CSS}</style>"
            f"</head><body><h1>N2G graphs: layer {layer} of {html.escape(str(scan.meta.get('model_id', 'model')))}"
            f"</h1>{summary}{''.join(cards)}</body></html>")
    write_text_atomic(os.path.join(base, "index.html"), page)
    links = [(f"N2G graphs: {len(graphs)} tiny-LM neurons explained as token patterns", "n2g/index.html")]
    return {(layer, n): g for n, g in graphs.items()}, links
