"""Many neurons at once: ``explain_layer`` (batched, resumable, saved), ``load_layer`` and the demo's graphs."""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import numpy as np

from ...storage.write import claim_dir, write_text_atomic
from ...errors import ScanError
from .augment import Augmenter, get_augmenter
from .config import N2GConfig
from .evaluate import SCORE_COLUMNS, evaluation_of, score_activations, summary_table
from .fit import Forward, Prompt, check_causal, default_mask_token, fit_tries, split_examples
from .neuron_graph import NeuronGraph, example_prompts
from .render import write_demo_page

__all__ = ["LayerGraphs", "explain_layer", "load_layer", "demo_section", "detection_docs", "scan_text"]


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
        """Per-layer summary (:func:`mri_lens.lenses.n2g.summary_table`)."""
        return summary_table(self.values())

    def neuron_table(self):
        """One row per neuron: the scores of N2G and the baselines (firing P/R/F1, non-firing F1, simulation
        correlation, detection balanced accuracy and AUC), the winner and whether N2G loses to token lookup."""
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
    s, ev = g.scores or {}, evaluation_of(g)
    row["no_firing_test_token"] = ev.get("no_firing_test_token")
    row["winner"] = ev.get("winner")
    row["loses_to_token_lookup"] = s.get("n2g", {}).get("loses_to_token_lookup")
    for m in ("n2g", "token", "ngram"):
        for k in SCORE_COLUMNS:
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
                  progress: bool = True, overwrite: bool = False, engine: str = "local", workers: int = 2,
                  address: str | None = None, n_bands: int = 5, per_band: int = 2) -> LayerGraphs:
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
    config: default ``N2GConfig()`` (the best measured configuration); ``N2GConfig.paper()``: the paper's.
    augmenter: as in :meth:`NeuronGraph.fit` (``None``: ``config.augmenter``; ``"embedding"``, ``"probe"``, ``"none"``).
    evaluate: score each graph on its held-out examples plus ``n_random`` random documents (default: as many as
        test examples), with the token-lookup and n-gram baselines, and on detection contexts
        (:func:`detection_docs` with ``n_bands``, ``per_band``); stored in ``graph.scores``.
    out_dir: save ``L{layer}/N{neuron}.json`` per neuron and ``L{layer}/summary.json`` / ``summary.csv``.
        Resumable: neurons whose file exists are loaded, not refitted. The directory must be free, empty or an
        N2G output directory (its ``manifest.json`` says so); anything else is refused before any fitting
        unless ``overwrite=True`` (files mri_lens did not write are never removed).
    min_activation: neurons whose top activation is not above this are skipped as dead.
    progress: a progress bar in neurons (:class:`_NeuronBar`: it moves neuron by neuron inside a chunk, whose
        neurons share every forward pass; on Ray, chunk by chunk).
    engine: ``"local"`` or ``"ray"``: the same chunks of neurons fitted on an actor pool of model replicas
        (:mod:`mri_lens.scanning.ray_engine`; ``model`` a model spec and ``scan`` saved on disk, a path or a loaded
        scan), with the same graphs as here (each chunk is computed exactly as in one process).
    workers, address: the Ray engine's actors and cluster (default: a local one).

    Returns
    -------
    :class:`LayerGraphs` ``{neuron: NeuronGraph}``.
    """
    from tqdm.auto import tqdm

    from ...model.adapter import as_adapter

    cfg = config or N2GConfig()
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    spec, scan_path = None, None
    if engine == "ray":
        spec, scan, scan_path = _ray_inputs(model, scan)
        model = spec.load()
    adapter = as_adapter(model)
    check_causal(adapter)
    li = scan.layer_index(layer)
    layer = int(layer)
    ids = _checked_neurons(adapter, scan, neurons, k, chunk_size)
    aug = get_augmenter(augmenter if augmenter is not None else cfg.augmenter)
    mask = cfg.mask_token if cfg.mask_token is not None else default_mask_token(adapter)
    width = int(scan.meta.get("max_length") or adapter.n_ctx)
    if out_dir is not None:
        out_dir = claim_dir(out_dir, N2G_DIR_KIND, overwrite=overwrite)
    result = LayerGraphs(layer)
    todo = _to_fit(adapter, scan, li, layer, ids, min_activation, out_dir, result)
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"N2G layer {layer}", unit="neuron", disable=not progress, leave=False)
    if engine == "ray":
        kwargs = dict(k=k, config=cfg, seed=seed, augmenter=augmenter, evaluate=evaluate, n_random=n_random,
                      min_activation=min_activation, backend=backend, n_bands=n_bands, per_band=per_band)
        cost = _explain_on_ray(spec, scan_path, layer, todo, chunk_size, kwargs, adapter, result, out_dir, bar,
                               workers=workers, address=address)
    else:
        job = _LocalJob(adapter, scan, li, layer, k, cfg, aug, mask, width, seed, evaluate, n_random, backend,
                        _NeuronBar(bar), (n_bands, per_band))
        cost = job.run(todo, chunk_size, result, out_dir)
    bar.close()
    result.cost = {"neurons_fitted": len(todo), "seconds": time.perf_counter() - t0, **cost}
    if out_dir is not None:
        _write_summary(out_dir, result)
    return result


def _checked_neurons(adapter: Any, scan: Any, neurons: Sequence[int] | None, k: int, chunk_size: int) -> list[int]:
    """The sorted neuron ids to explain, after checking the model against the scan and ``k``, ``chunk_size``."""
    if adapter.d_mlp is not None and int(adapter.d_mlp) != scan.d_mlp and scan.meta.get("units", {}).get(
            "kind", "mlp_post") == "mlp_post":
        raise ScanError(f"the model has d_mlp={adapter.d_mlp} but the scan has {scan.d_mlp}: pass the scanned model")
    ids = list(range(scan.d_mlp)) if neurons is None else sorted({int(n) for n in neurons})
    if not ids or ids[0] < 0 or ids[-1] >= scan.d_mlp:
        raise ValueError(f"neurons must be a non-empty selection of 0..{scan.d_mlp - 1}")
    if k < 2:
        raise ValueError(f"k must be at least 2 (train and test examples), got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return ids


def _to_fit(adapter: Any, scan: Any, li: int, layer: int, ids: list[int], min_activation: float,
            out_dir: str | None, result: LayerGraphs) -> list[int]:
    """The neurons still to fit: dead ones go to ``result.skipped``, ones saved under ``out_dir`` are loaded into
    ``result`` (a damaged file is refitted)."""
    todo = []
    for n in ids:
        top = float(scan.top.values[li, n, 0]) if scan.top.docs[li, n, 0] >= 0 else float("nan")
        if not top > min_activation:
            result.skipped[n] = f"dead (top activation {top:.4g} <= {min_activation})"
            continue
        if out_dir is not None and os.path.exists(_path(out_dir, layer, n)):
            try:
                result[n] = NeuronGraph.load(_path(out_dir, layer, n), adapter.tokenizer, follow_symlinks=False)
                continue
            except Exception:  # noqa: BLE001 - a damaged file is simply refitted
                pass
        todo.append(n)
    return todo


class _NeuronBar:
    """The local progress bar of :func:`explain_layer`, in neurons. The neurons of a chunk share every forward pass,
    so none is finished before the chunk is; the bar moves neuron by neuron with the chunk's forward passes
    instead, never onto the chunk's last neuron before the chunk is done. How far: ``r``, the tokens run so far per
    token of the chunk's examples, against the ratio the chunks before needed (``r / ratio``); in the first chunk,
    with nothing measured yet, ``r / (r + FIRST_GUESS)``."""

    FIRST_GUESS = 6.0  # tokens run per token of the examples, for the first chunk only

    def __init__(self, bar: Any):
        self.bar = bar
        self.done = 0  # neurons of finished chunks
        self.size, self.ran_tokens, self.example_tokens = 0, 0, 1
        self.seen_ran, self.seen_examples = 0, 0

    def start(self, n_neurons: int, example_tokens: int) -> None:
        self.size, self.ran_tokens, self.example_tokens = n_neurons, 0, max(int(example_tokens), 1)

    def ran(self, tokens: int) -> None:
        """A forward pass of ``tokens`` real tokens finished."""
        self.ran_tokens += int(tokens)
        if not self.size:
            return
        r = self.ran_tokens / self.example_tokens
        frac = r / (self.seen_ran / self.seen_examples) if self.seen_ran else r / (r + self.FIRST_GUESS)
        self._to(self.done + min(self.size - 1, int(self.size * frac)))

    def finish(self) -> None:
        self.seen_ran += self.ran_tokens
        self.seen_examples += self.example_tokens
        self.done += self.size
        self.size = 0
        self._to(self.done)

    def _to(self, position: int) -> None:
        if position > self.bar.n:
            self.bar.update(position - self.bar.n)


class _CountedForward(Forward):
    """A :class:`Forward` that reports the real tokens of each forward pass to a :class:`_NeuronBar`."""

    def __init__(self, *args: Any, progress: _NeuronBar, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.progress = progress

    def _forward(self, seqs):
        before = self.tokens
        out = super()._forward(seqs)
        self.progress.ran(self.tokens - before)
        return out


class _LocalJob:
    """Chunks of neurons of one layer fitted (and scored) in this process, one pooled set of forwards per stage."""

    def __init__(self, adapter: Any, scan: Any, li: int, layer: int, k: int, cfg: N2GConfig, aug: Augmenter,
                 mask: int, width: int, seed: int, evaluate: bool, n_random: int | None, backend: Any,
                 progress: _NeuronBar, bands: tuple[int, int] = (5, 2)):
        from ...model.capture import get_backend
        from ...model.units import units_for_scan

        self.adapter, self.scan, self.li, self.layer, self.k = adapter, scan, li, layer, k
        self.cfg, self.aug, self.mask, self.width = cfg, aug, mask, width
        self.seed, self.evaluate, self.n_random = seed, evaluate, n_random
        self.progress, self.bands = progress, bands
        # the scan's units (neurons or latents); gelu_new fused: N2G runs many short forwards
        cap = get_backend(adapter, backend, units=units_for_scan(scan), fused_activations=True)
        self.fit_run = _CountedForward(adapter, cap, layer, cfg.max_batch_tokens, progress=progress,
                                       share_prefixes=cfg.share_prefixes)
        self.eval_run = _CountedForward(adapter, cap, layer, cfg.max_batch_tokens, progress=progress,
                                        share_prefixes=cfg.share_prefixes)

    def run(self, todo: list[int], chunk_size: int, result: LayerGraphs, out_dir: str | None) -> dict:
        """Fit every neuron of ``todo`` into ``result`` (saved under ``out_dir``); returns the forward counts."""
        for c in range(0, len(todo), chunk_size):
            chunk = todo[c:c + chunk_size]
            graphs = self.chunk(chunk)
            for n in chunk:
                result[n] = graphs[n]
                if out_dir is not None:  # inside the directory claimed above: its files are ours to replace
                    write_text_atomic(_path(out_dir, self.layer, n), graphs[n].to_json())
            self.progress.finish()
        fc, ec = self.fit_run.counts(), self.eval_run.counts()
        return {**{f"fit_{key}": v for key, v in fc.items()}, **{f"eval_{key}": v for key, v in ec.items()}}

    def chunk(self, chunk: list[int]) -> dict[int, NeuronGraph]:
        """The graphs of one chunk of neurons, fitted together (and scored together)."""
        scan, layer, cfg = self.scan, self.layer, self.cfg
        jobs, splits = [], {}
        for n in chunk:
            prompts = example_prompts(scan.top_examples(layer, n, self.k), self.adapter, window=self.width)
            norm = float(scan.stats.max[self.li, n])
            train, test = split_examples(len(prompts), cfg.train_proportion,
                                         np.random.default_rng([self.seed, layer, n]))
            splits[n] = (prompts, train, test, norm)
            jobs.append((n, norm, [Prompt(prompts[i].ids, prompts[i].pivot, prompts[i].doc) for i in train]))
        self.progress.start(len(chunk), sum(len(p.ids) for prompts, *_ in splits.values() for p in prompts))
        before = self.fit_run.counts()
        fitted = fit_tries(self.fit_run, jobs, cfg, self.aug, self.mask)
        share = {key: (v - before[key]) / len(chunk) for key, v in self.fit_run.counts().items()}
        share["neurons_sharing"] = len(chunk)
        graphs = {}
        for n, (trie, st, fb) in zip(chunk, fitted):
            prompts, train, test, norm = splits[n]
            graphs[n] = NeuronGraph._build(self.adapter, layer, n, trie, st, cfg, self.aug, self.mask, norm, prompts,
                                           train, test, self.seed, share, fb)
        if self.evaluate:
            _evaluate_chunk(graphs, splits, scan, self.eval_run, self.n_random, self.seed, layer,
                            self.adapter.n_special_prefix, self.width, self.bands)
        return graphs


def _ray_inputs(model: Any, scan: Any):
    """The model spec and the saved scan's path that every Ray worker loads for itself."""
    from ...model.bundled import ModelSpec
    from ...results import Scan

    if not isinstance(model, (str, os.PathLike, ModelSpec)):
        raise ValueError("engine='ray' needs the model as a spec (a hub name, a local directory, 'tiny'/'minilm' "
                         "or mri_lens.model.bundled.ModelSpec): every worker loads its own copy")
    spec = model if isinstance(model, ModelSpec) else ModelSpec(os.fspath(model))
    path = os.fspath(scan) if isinstance(scan, (str, os.PathLike)) else getattr(scan, "source_path", None)
    if path is None:
        raise ValueError("engine='ray' needs a saved scan (a path, or a scan loaded with Scan.load): every worker "
                         "reads it from storage it can reach; save it first")
    return spec, scan if isinstance(scan, Scan) else Scan.load(path), os.path.abspath(path)


_worker_scans: dict[str, Any] = {}  # per Ray worker process: the scans it loaded (one load per worker)


def _explain_chunk(adapter: Any, scan_path: str, layer: int, neurons: list[int], kwargs: dict) -> dict:
    """One chunk of neurons on a Ray worker: the graphs as JSON, the counted cost."""
    from ...results import Scan

    if scan_path not in _worker_scans:
        _worker_scans[scan_path] = Scan.load(scan_path)
    graphs = explain_layer(adapter, _worker_scans[scan_path], layer, neurons, progress=False,
                           chunk_size=max(len(neurons), 1), **kwargs)
    return {"graphs": {int(n): g.to_json() for n, g in graphs.items()}, "cost": dict(graphs.cost)}


def _explain_on_ray(spec, scan_path, layer, todo, chunk_size, kwargs, adapter, result, out_dir, bar, *, workers,
                    address) -> dict:
    """The chunks of ``todo`` (the same chunks one process fits) on an actor pool; graphs into ``result``."""
    import json

    from ...scanning.ray_engine import actor_pool

    chunks = [todo[c:c + chunk_size] for c in range(0, len(todo), chunk_size)]
    cost: dict[str, float] = {}
    if not chunks:
        return cost
    with actor_pool(spec, workers=min(workers, len(chunks)), address=address,
                    adapter_options={"prepend_bos": adapter.prepend_bos}) as pool:
        for out in pool.map(lambda a, ch: a.call.remote(_explain_chunk, scan_path, layer, ch, kwargs), chunks):
            for n, text in out["graphs"].items():
                g = NeuronGraph.from_dict(json.loads(text), source=f"Ray worker (layer {layer}, neuron {n})",
                                          tokenizer=adapter.tokenizer)
                result[int(n)] = g
                if out_dir is not None:
                    write_text_atomic(_path(out_dir, layer, int(n)), text)
            for key, v in out["cost"].items():
                if key != "seconds" and isinstance(v, (int, float)):
                    cost[key] = cost.get(key, 0) + v
            bar.update(len(out["graphs"]))
    return cost


def detection_docs(scan: Any, layer: int, neuron: int, exclude: set[int], rng: np.random.Generator, *,
                   n_bands: int = 5, per_band: int = 2) -> list[int]:
    """Documents for the detection score of one neuron, none in ``exclude`` (its top examples).

    ``n_bands`` quantile bands of the scan's per-document max (``"max"`` pooling) over the documents reaching at
    least a tenth of the neuron's max, ``per_band`` drawn from each, so the contexts span the activation range;
    plus as many documents below a tenth (non-activating). Without max pooling in the scan: random documents.
    Sorted document ids."""
    pool = np.array([d for d in range(scan.n_docs) if d not in exclude], dtype=np.int64)
    want = n_bands * per_band
    if not len(pool) or not want:
        return []
    if "max" not in scan.poolings:
        return sorted(int(d) for d in rng.choice(pool, size=min(2 * want, len(pool)), replace=False))
    pm = np.asarray(scan.pooled("max", layer)[:, neuron], dtype=np.float64)[pool]
    top = float(scan.stats.max[scan.layer_index(layer), neuron])
    act = pool[pm >= 0.1 * top]
    act = act[np.argsort(pm[pm >= 0.1 * top], kind="stable")]
    out = []
    for band in np.array_split(act, n_bands) if len(act) else []:
        if len(band):
            out += rng.choice(band, size=min(per_band, len(band)), replace=False).tolist()
    low = pool[pm < 0.1 * top]
    if len(low):
        out += rng.choice(low, size=min(len(out) or want, len(low)), replace=False).tolist()
    return sorted(int(d) for d in out)


def _evaluate_chunk(graphs, splits, scan, run: Forward, n_random, seed, layer, n_prefix, width,
                    bands: tuple[int, int] = (5, 2)) -> None:
    """Held-out, random, detection and training texts of every neuron of the chunk in one pooled set of
    forwards."""
    req, spans, texts = [], {}, {}
    for n, g in graphs.items():
        prompts, train, test, _ = splits[n]
        m = len(test) if n_random is None else int(n_random)
        excl = {p.doc for p in prompts}
        pool = np.array([d for d in range(scan.n_docs) if d not in excl])
        pick = np.random.default_rng([seed, layer, n, 2]).choice(pool, size=min(m, len(pool)), replace=False) \
            if m and len(pool) else []
        rand = [scan_text(scan, int(d), n_prefix, width) for d in sorted(int(x) for x in pick)]
        det_docs = detection_docs(scan, layer, n, excl, np.random.default_rng([seed, layer, n, 3]),
                                  n_bands=bands[0], per_band=bands[1])
        det = [scan_text(scan, d, n_prefix, width) for d in det_docs]
        g.examples["random_docs"] = sorted(int(x) for x in pick)
        g.examples["detection_docs"] = det_docs
        texts[n] = ([prompts[i].ids for i in test], [r for r in rand if r], [prompts[i].ids for i in train],
                    [c for c in det if c])
        spans[n] = len(req)
        req.extend((s, n) for part in texts[n] for s in part)
    acts = run(req)
    for n, g in graphs.items():
        parts, a = [], spans[n]
        for t in texts[n]:
            parts.append(acts[a:a + len(t)])
            a += len(t)
        (test, rand, train, det), (ta, ra, tra, da) = texts[n], parts
        if not test:
            g.scores = None
            continue
        # detection contexts: the sampled documents plus the held-out top examples (the top band)
        g.scores, g.meta["evaluation"] = score_activations(g, test, ta, rand, ra, train, tra, test + det, ta + da)


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
    from ...errors import ScanFileError

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


def demo_section(model: Any, scan: Any, out_dir: str | os.PathLike, neurons: Sequence[int], *, layer: int = 0,
                 seed: int = 0, site_prefix: str = "site") -> tuple[dict[tuple[int, int], NeuronGraph],
                                                                  list[tuple[str, str]]]:
    """N2G graphs of a few neurons for ``mri-lens demo``: fitted, scored, saved under ``out_dir/n2g`` with an
    ``index.html`` page. Returns ``({(layer, neuron): graph}, [(link text, url relative to out_dir)])``."""
    base = os.path.join(os.fspath(out_dir), "n2g")
    graphs = explain_layer(model, scan, layer, neurons, seed=seed, out_dir=base, progress=False)
    write_demo_page(os.path.join(base, "index.html"), graphs, layer, scan.meta.get("model_id", "model"),
                    site_prefix=site_prefix)
    links = [(f"N2G graphs: {len(graphs)} tiny-LM neurons explained as token patterns", "n2g/index.html")]
    return {(layer, n): g for n, g in graphs.items()}, links
