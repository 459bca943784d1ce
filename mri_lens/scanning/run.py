"""The scan: stream a corpus through a model once, keeping pooled activations, neuron statistics and top-k examples.

One process or many, the same steps: options fixed and checked (:mod:`mri_lens.scanning.options`), an engine's
session (:mod:`mri_lens.scanning.engines`) plans the scan (:mod:`mri_lens.scanning.plan`: tokens, the
length-sorted batch plan, shards) and runs the shard function on each shard (:mod:`mri_lens.scanning.shard`),
then one exact merge (:mod:`mri_lens.scanning.merge`). With ``out=`` the output directory
(:mod:`mri_lens.scanning.outdir`) holds the plan and each finished shard, written atomically, so a rerun of the
same call skips what is done, and pooled values go to disk as they are computed (memory holds one shard, whatever
the corpus size).
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any, Sequence

from ..data.corpus import Corpus, as_corpus
from ..model.loading import library_versions
from ..results import Scan
from .engines import LocalEngine, RayEngine, as_engine, is_spec
from .merge import assemble
from .options import DEFAULT_TOP_K, ScanOptions, resolve_options
from .outdir import ScanDir
from .plan import ScanPlan

__all__ = ["scan"]


def scan(model: Any, corpus: Corpus | Sequence[str], options: ScanOptions | None = None, *,
         engine: LocalEngine | RayEngine | None = None, out: str | os.PathLike | None = None, progress: bool = True,
         overwrite: bool = False, **overrides: Any) -> Scan:
    """Run ``corpus`` through ``model`` once and keep what the lenses need.

    Parameters
    ----------
    model: TransformerLens ``HookedTransformer`` / ``TransformerBridge``, an :class:`~mri_lens.HFModel`, a
        ``ModelAdapter``, or a model spec (a hub name, a local directory, ``"tiny"``/``"minilm"``, or a
        :class:`~mri_lens.ModelSpec`): a spec is loaded by the engine (by every worker of the Ray engine).
    corpus: a :class:`~mri_lens.Corpus` or a list of strings.
    options: a :class:`~mri_lens.ScanOptions` (default ``ScanOptions()``): what the scan computes.
    engine: where the shards run: :class:`~mri_lens.LocalEngine` (default: this process) or
        :class:`~mri_lens.RayEngine` (an actor pool on a Ray cluster: needs ``out`` on storage every node can
        reach, and the model as a spec).
    out: a directory: the plan, then each shard as it finishes, then the merged scan (what ``Scan.load(out)``
        returns; its pooled values stay in the shards' files, memory-mapped when used). Running the same call
        again resumes: finished shards are not recomputed, a damaged or misplaced part is (``meta["run"]`` says
        what was done); a finished scan is just loaded. A directory holding a scan or run of another corpus,
        model or options is refused. Processes scanning into one ``out`` share its shards.
    progress: show a progress bar (tokens).
    overwrite: with ``out``: replace what is there (another scan, or this scan: everything is computed again).
    **overrides: :class:`~mri_lens.ScanOptions` fields replacing those of ``options`` (``layers=[3]``,
        ``top_k=50``...); anything else raises ``TypeError``.

    Every option is checked before a model is loaded or run (``units``: its hooks and any SAE's width too). Returns
    a :class:`~mri_lens.Scan` with ``pooled(name)`` of shape ``[n_docs, n_layers, width]`` (``width``: ``d_mlp``
    for MLP neurons, else the units', ``meta["units"]``), ``stats``, ``top``/``bottom`` top-k lists.
    """
    t_start = time.perf_counter()
    options = resolve_options(options, overrides)
    engine = as_engine(engine)
    corpus = as_corpus(corpus)
    if isinstance(engine, RayEngine) and out is None:
        raise ValueError("the Ray engine needs out= (a directory every worker can write: shards go there)")
    if isinstance(engine, RayEngine) and not is_spec(model):
        raise ValueError("the Ray engine needs the model as a spec (a hub name, a local directory, 'tiny'/'minilm' "
                         "or mri_lens.ModelSpec): every worker loads its own copy, never a pickled model")
    outdir = None if out is None else ScanDir(out, corpus.fingerprint(), overwrite=overwrite)  # before any model
    if outdir is not None:
        options = options.with_shards_for_disk()
    with engine.session(model, options) as session:
        plan = session.plan(corpus, options)
        _warn_about_plan(plan, options, len(corpus))
        meta = _meta(plan, options, session.facts)
        if outdir is None:
            result = assemble(plan, session.in_memory(plan, progress), meta=meta,
                              tokenizer_json=session.facts["tokenizer_json"], in_memory=True)
            result.meta["seconds"] = round(time.perf_counter() - t_start, 3)
        else:
            result = _scan_to_disk(outdir, plan, session, meta, engine.name, progress, t_start)
    if options.units is not None:  # the lenses recompute activations of these units (SAE weights are not saved)
        result.unit_set = options.units
    return result


def _warn_about_plan(plan: ScanPlan, options: ScanOptions, n_docs: int) -> None:
    if plan.n_truncated and options.overflow == "truncate":
        warnings.warn(f"{plan.n_truncated} of {n_docs} texts are longer than max_length="
                      f"{plan.options['max_length']} tokens and were truncated (overflow='windows' keeps every token)",
                      stacklevel=3)
    if plan.options["top_k"] < options.top_k and options.top_k > DEFAULT_TOP_K:
        warnings.warn(f"top_k={options.top_k} is more than the corpus's {n_docs} documents: the top and bottom "
                      f"lists keep {plan.options['top_k']} examples per neuron", stacklevel=3)


def _meta(plan: ScanPlan, options: ScanOptions, facts: dict[str, Any]) -> dict[str, Any]:
    """What the scan records about itself (``Scan.meta``)."""
    return {
        **facts["describe"], "layers": list(plan.layers), "pooling": list(options.pooling), "top_k": options.top_k,
        "max_length": plan.options["max_length"], "overflow": options.overflow, "n_truncated": plan.n_truncated,
        "include_bos": options.include_bos, "bos_excluded_from_stats": bool(plan.n_skip), "dtype": options.dtype,
        "backend": facts["backend"], "capture": facts["capture"], "batch_size": options.batch_size,
        "max_batch_tokens": options.max_batch_tokens, "n_docs": plan.n_docs, "n_sequences": int(len(plan.seq_doc)),
        "n_input_tokens": int(len(plan.seq_tokens)), "corpus_fingerprint": plan.corpus_fingerprint,
        "weights_sha256": plan.model["weights_sha256"], "versions": library_versions(), "plan_hash": plan.hash,
        "n_shards": plan.n_shards, "units": plan.options.get("units") or {"kind": "mlp_post", "unit_noun": "neuron"},
    }


def _scan_to_disk(outdir: ScanDir, plan: ScanPlan, session: Any, meta: dict[str, Any], engine: str,
                  progress: bool, t_start: float) -> Scan:
    """Compute the shards ``out`` lacks (sharing them with other processes), merge, save; or load the finished
    scan. ``meta["run"]`` says what this call did."""
    done = outdir.bind(plan)
    if done is not None:
        done.meta["run"] = {**done.meta.get("run", {}), "already_finished": True, "computed": 0,
                            "resumed": plan.n_shards, "shared": 0, "computed_tokens": 0, "repaired": []}
        return done
    todo = outdir.todo()
    queue = outdir.queue(todo)
    try:
        session.compute(plan, queue, outdir, progress)
    finally:
        queue.close()
    repaired = [r for r in outdir.repairs if r["shard"] in queue.computed]  # not those another process redid
    run = {"shards": plan.n_shards, "computed": len(queue.computed), "shared": len(queue.shared),
           "resumed": plan.n_shards - len(todo), "computed_tokens": sum(plan.shard_tokens(i) for i in queue.computed),
           "engine": engine, "repaired": repaired}
    if outdir.damaged_scan:
        run["damaged_scan"] = outdir.damaged_scan
        warnings.warn(f"the scan saved in {outdir.path} could not be loaded ({outdir.damaged_scan}): its shards were "
                      "checked and it is merged again", stacklevel=3)
    if repaired:
        shards = ", ".join(f"shard {r['shard']} ({r['why']})" for r in repaired)
        warnings.warn(f"{outdir.path}: computed again {shards}", stacklevel=3)
    meta = {**meta, "seconds": round(time.perf_counter() - t_start, 3), "run": run}
    return outdir.merge(meta, session.facts["tokenizer_json"])
