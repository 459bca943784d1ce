"""The scan: stream a corpus through a model once, keeping pooled activations, neuron statistics and top-k examples.

One process or many, the same steps: a plan (:mod:`mri_lens.scanning.plan`: tokens, the length-sorted batch plan, shards),
the shard function on each shard (:mod:`mri_lens.scanning.shard`), an exact merge (:mod:`mri_lens.scanning.merge`). With ``out=``
the scan writes the plan first and each finished shard atomically, so a rerun of the same call skips what is done,
and pooled values go to disk as they are computed (memory holds one shard, whatever the corpus size).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from typing import Any, Sequence

import numpy as np

from ..storage.files import RUN_RE, read_json, write_text_atomic
from ..storage.write import check_save_target
from ..model.adapter import as_adapter
from ..model.capture import CaptureBackend, get_backend
from ..data.corpus import Corpus, as_corpus
from ..errors import ScanFileError
from .histogram import _log2_lut, default_histogram_edges  # noqa: F401 - their documented home was here
from ..model.loading import library_versions
from .merge import PartsMerge
from ..results.parts import ScanPart
from .plan import POOLINGS, ScanPlan, make_plan
from ..results.pooled import PartDocs, SplitPooled
from .shard import STATS_IMPL, _Accumulator, _merge_topk, run_shard  # noqa: F401 - re-exported for tests
from ..results.scan import Scan

__all__ = ["scan", "default_histogram_edges", "POOLINGS", "DEFAULT_SHARD_TOKENS", "DEFAULT_SHARD_BYTES"]

DEFAULT_SHARD_TOKENS = 1 << 20  # counted tokens per shard when out= is given (a kill loses at most one shard)
DEFAULT_SHARD_BYTES = 256 << 20  # pooled values a worker holds while it computes a shard (then they go to disk)
ENGINES = ("local", "ray")


def scan(model: Any, corpus: Corpus | Sequence[str], *, layers: Sequence[int] | int | None = None,
         batch_size: int = 32, max_batch_tokens: int | None = 2048, max_length: int | None = None,
         overflow: str = "truncate",
         pooling: Sequence[str] = ("mean", "max"), top_k: int = 20, dtype: str = "float32",
         device: str | None = None, prepend_bos: bool | None = None, padding_side: str = "right",
         include_bos: bool = False, histogram_edges: Sequence[float] | None = None,
         backend: str | CaptureBackend | None = None, progress: bool = True, out: str | os.PathLike | None = None,
         overwrite: bool = False, shard_tokens: int | None = None, shard_bytes: int | None = None,
         engine: str = "local", workers: int = 2,
         address: str | None = None, gpus_per_worker: float | None = None, threads_per_worker: int = 1) -> Scan:
    """Run ``corpus`` through ``model`` once and keep what the lenses need.

    Parameters
    ----------
    model: TransformerLens ``HookedTransformer`` / ``TransformerBridge``, an :class:`~mri_lens.HFModel`, a
        ``ModelAdapter``, or a model spec (a hub name, a local directory, ``"tiny"``/``"minilm"``, or a
        :class:`~mri_lens.model.bundled.ModelSpec`): a spec is loaded here, and by every worker of the Ray engine.
    corpus: a :class:`Corpus` or a list of strings.
    layers: model layers to capture (default: all). Capture stops after the last one.
    batch_size: sequences per forward; sequences are sorted by length so batches hold similar lengths.
    max_batch_tokens: at most this many padded tokens per forward (default 2048; None: no limit). Bounds the
        model's own transient memory (attention scores, logits-free activations) whatever the text lengths;
        on CPU, batches of this size run as fast as larger ones (bench/RESULTS.md). Raise it on a GPU.
    max_length: tokens per sequence, special tokens included (default and maximum: the model's context).
    overflow: ``"truncate"`` (default; one warning says how many texts), ``"windows"`` (split long texts into
        consecutive windows, each with its own BOS; pooled values and top-k span all windows of a document), or
        ``"error"``.
    pooling: per-document poolings to keep, among ``"mean"``, ``"max"``, ``"min"``, ``"last"``.
    top_k: examples kept per neuron for the top (by the document's max) and bottom (by its min) lists.
    dtype: storage dtype of pooled arrays, ``"float32"`` or ``"float16"`` (statistics are always float64/32).
    device: move the model there first (default: leave it where it is).
    prepend_bos, padding_side: see :class:`~mri_lens.model.adapter.ModelAdapter`; recorded in the result.
    include_bos: count the BOS position of causal models in statistics, pooling and top-k. Default False: its
        activation is the same for every document (it sees only itself) and would crowd top-k lists with ties.
        Encoder models' [CLS]/[SEP] are contextual and always counted.
    histogram_edges: finite bin edges of the per-neuron histograms (default :func:`default_histogram_edges`).
    backend: capture backend name or instance (default TransformerLens hooks).
    progress: show a tqdm progress bar (tokens).
    out: a directory: write the plan, then each shard as it finishes, then the merged scan (what
        ``Scan.load(out)`` returns; its pooled values stay in the shards' files, memory-mapped when used). Running
        the same call again resumes: finished shards are not recomputed (a finished scan is just loaded). A
        directory holding a scan or run of another corpus, model or options is refused (``overwrite=True``
        replaces it); see ``Scan.save`` for what else is refused.
    shard_tokens, shard_bytes: a shard holds at most this many counted tokens and this many bytes of pooled
        values in memory while it is computed (default: one shard without ``out``; with it
        :data:`DEFAULT_SHARD_TOKENS` and :data:`DEFAULT_SHARD_BYTES`, which bound a worker's memory whatever the
        corpus size). Shards are consecutive batches of the single-process plan, so the result does not depend on
        them (bit for bit but mean/std, see :mod:`mri_lens.scanning.merge`).
    engine: ``"local"`` (this process) or ``"ray"`` (an actor pool of model replicas on a Ray cluster: needs
        ``out`` on storage every node can reach and a model spec; :mod:`mri_lens.scanning.ray_engine`).
    workers, address, gpus_per_worker, threads_per_worker: the Ray engine's actors (``address``: the cluster,
        e.g. ``"auto"``; default a local one), GPUs per actor (default: 1 where the cluster has GPUs) and torch
        threads per actor on CPU.

    Returns
    -------
    Scan with ``pooled(name)`` of shape ``[n_docs, n_layers, d_mlp]``, ``stats``, ``top``/``bottom`` top-k lists.
    """
    t_start = time.perf_counter()
    corpus = as_corpus(corpus)
    for p in pooling:
        if p not in POOLINGS:
            raise ValueError(f"unknown pooling {p!r}; choose from {POOLINGS}")
    if not pooling:
        raise ValueError("pooling must name at least one pooling")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    if batch_size < 1 or top_k < 1 or (max_batch_tokens is not None and max_batch_tokens < 1):
        raise ValueError("batch_size, max_batch_tokens and top_k must be positive")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "ray" and out is None:
        raise ValueError("engine='ray' needs out= (a directory every worker can write: shards go there)")
    if out is not None:
        out = check_save_target(out, "mri_lens.scan", overwrite=overwrite)  # before any model loads
        if not overwrite:
            _refuse_another_corpus(out, corpus.fingerprint())
    spec = None
    if _is_spec(model):
        from ..model.bundled import ModelSpec

        spec = model if isinstance(model, ModelSpec) else ModelSpec(str(model))
        model = spec.load()
    elif engine == "ray":
        raise ValueError("engine='ray' needs the model as a spec (a hub name, a local directory, 'tiny'/'minilm' "
                         "or mri_lens.model.bundled.ModelSpec): every worker loads its own copy, never a pickled model")
    if device is not None:
        model.to(device)
    adapter = as_adapter(model, prepend_bos=prepend_bos, padding_side=padding_side)
    layer_list = adapter.check_layers(layers)
    cap = get_backend(adapter, backend)
    edges = np.asarray(default_histogram_edges() if histogram_edges is None else histogram_edges, dtype=np.float32)
    if edges.ndim != 1 or len(edges) < 1 or not np.all(np.diff(edges) > 0) or not np.all(np.isfinite(edges)):
        raise ValueError("histogram_edges must be finite and strictly increasing")
    options = {"layers": layer_list, "batch_size": batch_size, "max_batch_tokens": max_batch_tokens,
               "max_length": adapter.max_length(max_length), "overflow": overflow, "pooling": list(pooling),
               "top_k": top_k, "dtype": dtype, "include_bos": bool(include_bos), "backend": cap.name,
               "histogram_edges": [float(x) for x in edges]}
    if out is not None and shard_tokens is None and shard_bytes is None:
        shard_tokens, shard_bytes = DEFAULT_SHARD_TOKENS, DEFAULT_SHARD_BYTES
    plan = make_plan(adapter, corpus, layers=layer_list, options=options, shard_tokens=shard_tokens,
                     shard_bytes=shard_bytes)
    if plan.n_truncated and overflow == "truncate":
        warnings.warn(f"{plan.n_truncated} of {len(corpus)} texts are longer than max_length="
                      f"{options['max_length']} tokens and were truncated (overflow='windows' keeps every token)",
                      stacklevel=2)
    meta = {
        **adapter.describe(), "layers": layer_list, "pooling": list(pooling), "top_k": top_k,
        "max_length": options["max_length"], "overflow": overflow, "n_truncated": plan.n_truncated,
        "include_bos": bool(include_bos), "bos_excluded_from_stats": bool(plan.n_skip), "dtype": dtype,
        "backend": cap.name, "capture": cap.describe(), "batch_size": batch_size, "max_batch_tokens": max_batch_tokens,
        "n_docs": len(corpus), "n_sequences": int(len(plan.seq_doc)), "n_input_tokens": int(len(plan.seq_tokens)),
        "corpus_fingerprint": plan.corpus_fingerprint, "versions": library_versions(),
        "plan_hash": plan.hash, "n_shards": plan.n_shards,
    }
    if out is None:
        parts = _run_local(adapter, cap, plan, range(plan.n_shards), edges, progress)
        result = _assemble(plan, parts, meta, adapter)
        result.meta["n_tokens"] = int(result.stats.count)
        result.meta["seconds"] = round(time.perf_counter() - t_start, 3)
        return result
    return _run_to_disk(adapter, cap, plan, out, edges, meta, progress=progress, overwrite=overwrite,
                        engine=engine, spec=spec, t_start=t_start,
                        ray_options={"workers": workers, "address": address, "gpus_per_worker": gpus_per_worker,
                                     "threads_per_worker": threads_per_worker})


def _is_spec(model: Any) -> bool:
    from ..model.bundled import ModelSpec

    return isinstance(model, (str, os.PathLike, ModelSpec))


def _bar(total: int, progress: bool, desc: str = "scan"):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="tok", desc=desc, disable=not progress, leave=False)


def _run_local(adapter, cap, plan: ScanPlan, shards, edges, progress, on_part=None) -> list[ScanPart]:
    """Run shards in this process, in plan order; ``on_part(part)`` (saving it) instead of keeping them."""
    shards = list(shards)
    bar = _bar(sum(plan.shard_tokens(i) for i in shards), progress)
    parts = []
    try:
        for i in shards:
            part = run_shard(adapter, cap, plan.shard(i), plan.layers, edges=edges, progress=bar)
            if on_part is None:
                parts.append(part)
            else:
                on_part(part)
            del part  # saved: its pooled values must not live on beside the next shard's
    finally:
        bar.close()
    return parts


def _assemble(plan: ScanPlan, parts, meta: dict, adapter) -> Scan:
    """The merged scan of in-memory parts (pooled values in memory)."""
    running = PartsMerge(plan.n_docs, dedup=bool(plan.options.get("dedup")))
    for p in parts:
        running.add(p)
    stats, top, bottom = running.stats()
    if len(parts) == 1 and not len(parts[0].partial_docs):  # the whole corpus in one shard: its arrays as they are
        pooled = dict(parts[0].pooled_)
    else:
        split = SplitPooled(parts, plan.n_docs, plan.d_mlp, running.doc_tokens, meta["dtype"])
        pooled = {name: split[name] for name in split.names}
    token_ids, offsets = plan.doc_token_arrays()
    return Scan(layers=list(plan.layers), pooled_=pooled, stats=stats, top=top, bottom=bottom, token_ids=token_ids,
                token_offsets=offsets, doc_token_counts=running.doc_tokens, labels=plan.labels,
                label_names=plan.label_names, meta=dict(meta), tokenizer_json=adapter.tokenizer_json())


def _refuse_another_corpus(out: str, fingerprint: str) -> None:
    """A scan or run of another corpus in ``out``: refused before the model loads (a different model or other
    options are found once the plan exists, see :func:`_prepare_run`)."""
    found = []
    if os.path.exists(os.path.join(out, "manifest.json")):
        try:
            found.append(read_json(os.path.join(out, "manifest.json"), "scan manifest", follow=False)
                         ["meta"]["scan"]["corpus_fingerprint"])
        except (ScanFileError, KeyError, TypeError):
            pass
    for name in os.listdir(out) if os.path.isdir(out) else []:
        if RUN_RE.match(name):
            try:
                found.append(read_json(os.path.join(out, name, "plan.json"), "scan plan",
                                       follow=False)["corpus_fingerprint"])
            except (ScanFileError, KeyError, TypeError):
                pass
    if any(isinstance(f, str) and f != fingerprint for f in found):
        raise ScanFileError(f"{out} holds a scan of another corpus, model or options (here: another corpus); "
                            "choose another out, or pass overwrite=True (command line --force) to replace it")


def _prepare_run(out: str, plan: ScanPlan, overwrite: bool) -> tuple[str, Scan | None]:
    """The run directory of ``plan`` inside ``out`` (created, its plan written), or the finished scan already there.

    A scan or another run in ``out`` of a different plan (corpus, model, options) is refused unless
    ``overwrite``."""
    run = os.path.join(out, f"run-{plan.hash[:16]}")
    if os.path.exists(os.path.join(out, "manifest.json")):
        try:
            done = Scan.load(out)
        except ScanFileError:
            done = None
        if done is not None and done.meta.get("plan_hash") == plan.hash:
            return run, done
        if not overwrite:
            raise ScanFileError(f"{out} holds a scan of another corpus, model or options (or an unreadable one); "
                                "choose another out, or pass overwrite=True (command line --force) to replace it")
    others = [n for n in os.listdir(out) if RUN_RE.match(n) and n != os.path.basename(run)] \
        if os.path.isdir(out) else []
    if others and not overwrite:
        raise ScanFileError(f"{out} holds an unfinished scan run of another corpus, model or options ({others[0]}); "
                            "choose another out, or pass overwrite=True (command line --force) to replace it")
    os.makedirs(run, exist_ok=True)
    plan_path = os.path.join(run, "plan.json")
    identity = json.loads(json.dumps(plan.identity))
    if os.path.exists(plan_path):
        if read_json(plan_path, "scan plan", follow=False) != identity:
            raise ScanFileError(f"{run} holds another scan plan (hash collision or a damaged plan.json); remove it")
    else:
        write_text_atomic(plan_path, json.dumps(identity, indent=1, sort_keys=True) + "\n")
    return run, None


def _part_dir(run: str, i: int) -> str:
    return os.path.join(run, f"part-{i:05d}")


def _finished(run: str, plan: ScanPlan) -> set[int]:
    done = set()
    for i in range(plan.n_shards):
        if os.path.exists(os.path.join(_part_dir(run, i), "manifest.json")):
            try:
                PartDocs(_part_dir(run, i), plan_hash=plan.hash)
                done.add(i)
            except ScanFileError:
                pass  # a damaged part is computed again
    return done


def _run_to_disk(adapter, cap, plan: ScanPlan, out: str, edges, meta: dict, *, progress: bool, overwrite: bool,
                 engine: str, spec: Any, t_start: float, ray_options: dict) -> Scan:
    run, done = _prepare_run(out, plan, overwrite)
    if done is not None:
        return done
    finished = _finished(run, plan)
    todo = [i for i in range(plan.n_shards) if i not in finished]
    computed_tokens = sum(plan.shard_tokens(i) for i in todo)

    def save(part: ScanPart) -> None:
        part.save(_part_dir(run, part.index), plan_hash=plan.hash, overwrite=True)

    if engine == "ray":
        from .ray_engine import run_shards

        run_shards(spec, plan, todo, run, edges=edges, adapter_options={"prepend_bos": adapter.prepend_bos,
                                                                         "padding_side": adapter.padding_side},
                   backend=cap.name, progress=progress, **ray_options)
    else:
        _run_local(adapter, cap, plan, todo, edges, progress, on_part=save)
    # merge: statistics one part at a time; pooled values stay in the parts' files
    running = PartsMerge(plan.n_docs, dedup=bool(plan.options.get("dedup")))
    docs = []
    for i in range(plan.n_shards):
        part = ScanPart.load(_part_dir(run, i), plan_hash=plan.hash)
        running.add(part)
        docs.append(PartDocs(_part_dir(run, i), plan_hash=plan.hash))
        del part
    stats, top, bottom = running.stats()
    token_ids, offsets = plan.doc_token_arrays()
    meta = {**meta, "n_tokens": int(stats.count), "seconds": round(time.perf_counter() - t_start, 3),
            "run": {"shards": plan.n_shards, "computed": len(todo), "resumed": len(finished),
                    "computed_tokens": int(computed_tokens), "engine": engine}}
    result = Scan(layers=list(plan.layers), pooled_=SplitPooled(docs, plan.n_docs, plan.d_mlp, running.doc_tokens,
                                                                meta["dtype"]),
                  stats=stats, top=top, bottom=bottom, token_ids=token_ids, token_offsets=offsets,
                  doc_token_counts=running.doc_tokens, labels=plan.labels, label_names=plan.label_names, meta=meta,
                  tokenizer_json=adapter.tokenizer_json())
    result.save(out, overwrite=True)  # ours: its plan was checked above
    return Scan.load(out)
