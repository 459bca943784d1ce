"""Where a scan's shards run: :class:`LocalEngine` (this process) or :class:`RayEngine` (an actor pool of model
replicas on a Ray cluster). Both run the same shard function on the same plan, so they give the same scan.

An engine is a small frozen settings object, validated on construction (a bad value raises one ``ValueError``
before Ray or a model starts). :meth:`session` opens it for one scan: a session plans the scan (tokens, batches,
shards; :mod:`mri_lens.scanning.plan`) and computes shards, in memory or into an output directory
(:mod:`mri_lens.scanning.outdir`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .options import ScanOptions, _finite, _int
from .plan import model_facts
from .shard import STATS_IMPLS

__all__ = ["LocalEngine", "RayEngine", "STATS_IMPLS", "as_engine"]

def _stats(v: Any) -> str:
    if not isinstance(v, str) or v not in STATS_IMPLS:
        raise ValueError(f"stats must be one of {STATS_IMPLS}, got {v!r}")
    return v


def _bar(total: int, progress: bool, desc: str = "scan"):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="tok", desc=desc, disable=not progress, leave=False)


@dataclass(frozen=True)
class LocalEngine:
    """Every shard in this process, in plan order.

    Parameters
    ----------
    device: move a loaded model there first (default ``None``: leave it where it is; a model spec loads where
        the spec says).
    stats: the per-batch statistics implementation: ``"auto"`` (default: the fused numba kernel for a CPU model
        when numba is installed, else torch), ``"numba"`` (CPU only) or ``"torch"`` (any device; what every CUDA
        scan runs). The same numbers to float rounding.
    """

    device: str | None = None
    stats: str = "auto"

    def __post_init__(self) -> None:
        if self.device is not None and (not isinstance(self.device, str) or not self.device):
            raise ValueError(f"device must be a device name such as 'cpu' or 'cuda:0', or None, got {self.device!r}")
        _stats(self.stats)

    name = "local"

    def session(self, model: Any, options: ScanOptions) -> "_LocalSession":
        return _LocalSession(self, model, options)


@dataclass(frozen=True)
class RayEngine:
    """Shards on a Ray actor pool: each actor loads the model once from a model spec (never a pickled model), one
    of them plans the scan (the driver never loads the weights), actors take shards and write each finished one
    to the output directory (on storage every node can reach); the driver merges. ``pip install "mri-lens[ray]"``.

    Parameters
    ----------
    workers: actors (model replicas), a positive integer (default 2).
    address: the Ray cluster, e.g. ``"auto"`` on a node of it or ``"head:6379"`` (default ``None``: start a local
        cluster in this process).
    gpus_per_worker: GPUs per actor, a number >= 0 (default ``None``: 1 where the cluster has a GPU per worker,
        else 0).
    threads_per_worker: torch (and numba) threads per CPU actor, a positive integer (default 1).
    max_attempts: times one shard is started before the scan gives up when its worker dies each time (killed, as
        an out-of-memory kill would): the scan then raises :class:`~mri_lens.errors.ScanError` naming the shard.
        An exception inside a shard fails the scan at once. Default 3.
    connect_timeout_s: seconds to connect to ``address`` before the scan gives up with
        :class:`~mri_lens.errors.ScanError` (default 60): an address nothing answers at fails at once, one that
        answers but is no Ray cluster within this bound.
    stats: the statistics implementation of the actors (see :class:`LocalEngine`).
    """

    workers: int = 2
    address: str | None = None
    gpus_per_worker: float | None = None
    threads_per_worker: int = 1
    max_attempts: int = 3
    connect_timeout_s: float = 60.0
    stats: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "workers", _int("workers", self.workers, 1))
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise ValueError(f"address must be a Ray cluster address such as 'auto' or 'head:6379', or None, "
                             f"got {self.address!r}")
        object.__setattr__(self, "gpus_per_worker", _finite("gpus_per_worker", self.gpus_per_worker, 0,
                                                            optional=True))
        object.__setattr__(self, "threads_per_worker", _int("threads_per_worker", self.threads_per_worker, 1))
        object.__setattr__(self, "max_attempts", _int("max_attempts", self.max_attempts, 1))
        t = _finite("connect_timeout_s", self.connect_timeout_s, 0)
        if t <= 0:
            raise ValueError(f"connect_timeout_s must be a positive number of seconds, got {self.connect_timeout_s!r}")
        object.__setattr__(self, "connect_timeout_s", t)
        _stats(self.stats)

    name = "ray"

    def session(self, model: Any, options: ScanOptions) -> "_RaySession":
        return _RaySession(self, model, options)


def as_engine(engine: Any) -> LocalEngine | RayEngine:
    """``engine`` itself, or a :class:`LocalEngine` for ``None``; anything else is refused."""
    if engine is None:
        return LocalEngine()
    if isinstance(engine, (LocalEngine, RayEngine)):
        return engine
    hint = " (e.g. engine=mri_lens.RayEngine(workers=2))" if engine in ("ray", "local") else ""
    raise TypeError(f"engine must be mri_lens.LocalEngine(...) or mri_lens.RayEngine(...), got {engine!r}{hint}")


def is_spec(model: Any) -> bool:
    from ..model.bundled import ModelSpec

    return isinstance(model, (str, os.PathLike, ModelSpec))


def as_spec(model: Any):
    from ..model.bundled import ModelSpec

    return model if isinstance(model, ModelSpec) else ModelSpec(os.fspath(model))


class _LocalSession:
    """A scan in this process: the model loaded (from a spec) or moved (``device``), its adapter and capture."""

    def __init__(self, engine: LocalEngine, model: Any, options: ScanOptions):
        from ..model.adapter import as_adapter
        from ..model.capture import get_backend

        self.engine, self.options = engine, options
        if is_spec(model):
            model = as_spec(model).load()
        if engine.device is not None:
            model.to(engine.device)
        self.adapter = as_adapter(model, prepend_bos=options.prepend_bos, padding_side=options.padding_side)
        self.cap = get_backend(self.adapter, options.backend, units=options.units)
        self.facts = model_facts(self.adapter, self.cap)
        if options.units is not None:  # latents are computed where the model runs
            self.cap.units.to(self.adapter.device)

    def __enter__(self) -> "_LocalSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def plan(self, corpus: Any, options: ScanOptions):
        from .plan import plan_scan

        return plan_scan(self.adapter, corpus, options, self.cap.name)

    def shards(self, plan: Any, indices, bar) -> Iterator[Any]:
        """The partial scans of shards ``indices``, computed one after the other (each dropped by the caller)."""
        from .shard import run_shard

        edges = np.asarray(plan.options["histogram_edges"], dtype=np.float32)
        for i in indices:
            yield run_shard(self.adapter, self.cap, plan.shard(i), plan.layers, edges=edges, progress=bar,
                            stats=self.engine.stats)

    def in_memory(self, plan: Any, progress: bool) -> list[Any]:
        """Every shard of ``plan``, kept in memory."""
        bar = _bar(sum(plan.shard_tokens(i) for i in range(plan.n_shards)), progress)
        try:
            return list(self.shards(plan, range(plan.n_shards), bar))
        finally:
            bar.close()

    def compute(self, plan: Any, queue: Any, outdir: Any, progress: bool) -> None:
        """The shards ``queue`` hands out, each saved into ``outdir`` as soon as it is finished."""
        bar = _bar(queue.tokens, progress)
        try:
            while (i := queue.next(block=True)) is not None:
                for part in self.shards(plan, [i], bar):
                    outdir.save_part(part)
                    del part  # saved: its pooled values must not live on beside the next shard's
                queue.done(i)
                bar.update(queue.pop_skipped_tokens())
        finally:
            bar.close()


class _RaySession:
    """A scan on a Ray actor pool; the driver holds the corpus, the plan and the merge, never the model."""

    def __init__(self, engine: RayEngine, model: Any, options: ScanOptions):
        from .ray_engine import actor_pool

        self.engine, self.options = engine, options
        self.pool = actor_pool(as_spec(model), workers=engine.workers, address=engine.address,
                               gpus_per_worker=engine.gpus_per_worker, threads_per_worker=engine.threads_per_worker,
                               adapter_options={"prepend_bos": options.prepend_bos,
                                                "padding_side": options.padding_side},
                               backend=options.backend, max_attempts=engine.max_attempts,
                               connect_timeout_s=engine.connect_timeout_s)
        self.facts: dict[str, Any] = {}

    def __enter__(self) -> "_RaySession":
        self.pool.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.pool.__exit__(*exc)

    def plan(self, corpus: Any, options: ScanOptions):
        from .ray_engine import plan_on_pool

        plan, self.facts = plan_on_pool(self.pool, corpus, options)
        return plan

    def compute(self, plan: Any, queue: Any, outdir: Any, progress: bool) -> None:
        from .ray_engine import run_shards

        bar = _bar(queue.tokens, progress, "scan (ray)")
        try:
            run_shards(self.pool, plan, queue, outdir.part_path, bar=bar, stats=self.engine.stats,
                       units=self.options.units)
        finally:
            bar.close()
