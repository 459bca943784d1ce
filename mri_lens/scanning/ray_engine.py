"""The Ray engine: the scan's own shard function (:func:`mri_lens.scanning.shard.run_shard`) on an actor pool of model
replicas. It holds no scan logic of its own: the plan, the shards, what a shard computes and the merge are the
ones a single process uses, so the result equals a one-process scan.

Each actor loads the model once from a :class:`~mri_lens.model.bundled.ModelSpec` (never a pickled model), takes shards
(consecutive batches of the plan, sent as plain arrays), writes each finished shard to the run directory (a path on
storage every node can reach) and returns a small summary; the driver merges. Faults: a dead actor is restarted
and its shard redone (``max_restarts=-1``, ``max_task_retries=-1``: the same shard gives the same result); an
exception in a shard fails the run with that shard's error; nothing is ever dropped. The cluster's resources are
checked first, so a request for GPUs or CPUs that do not exist fails at once instead of waiting forever.

``pip install "mri-lens[ray]"``. On a cluster, ``ray.init(address=...)`` (``address="auto"`` on a node of it) is
the only change; see the README's cluster recipe.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Sequence

import numpy as np

from ..errors import ScanError

__all__ = ["check_resources", "run_shards", "actor_pool"]

# Test hook: "<shard index>:<marker file>" makes the actor that starts that shard kill itself (SIGKILL) after its
# first batch, once (the marker records that it happened), to show that a dead actor's shard is redone.
FAULT_ENV = "MRI_LENS_FAULT_KILL_SHARD"


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError('the Ray engine needs Ray: pip install "mri-lens[ray]" (or pip install ray)') from None
    return ray


def check_resources(ray: Any, workers: int, gpus_per_worker: float, cpus_per_worker: float) -> None:
    """Fail fast, with the numbers, when the cluster cannot hold ``workers`` actors of this size (Ray would
    otherwise queue them forever)."""
    have = ray.cluster_resources()
    for name, per in (("GPU", gpus_per_worker), ("CPU", cpus_per_worker)):
        need = workers * per
        if per and have.get(name, 0.0) + 1e-9 < need:
            raise ScanError(f"the Ray engine asks for {workers} workers x {per:g} {name} = {need:g} {name}s, but the "
                            f"cluster has {have.get(name, 0.0):g} (resources: "
                            f"{ {k: v for k, v in have.items() if k in ('CPU', 'GPU', 'memory')} }); "
                            + ("pass gpus_per_worker=0 to run on CPUs" if name == "GPU" else
                               "use fewer workers or threads_per_worker"))


class _FaultOnce:
    """The progress object of a shard under the test hook: kills the process after the first batch, once."""

    def __init__(self, marker: str):
        self.marker = marker

    def update(self, _n: int) -> None:
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


class ShardWorker:
    """An actor: one model replica, loaded once, running shards of any plan of that model."""

    def __init__(self, spec: dict, adapter_options: dict, backend: str | None, threads: int | None):
        import torch

        from ..model.adapter import as_adapter
        from ..model.capture import get_backend
        from ..model.bundled import ModelSpec

        if threads:  # every thread pool of this process: torch's, and numba's for the statistics kernel
            torch.set_num_threads(int(threads))
            try:
                import numba

                numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
            except ImportError:
                pass
        self.adapter = as_adapter(ModelSpec(**spec).load(), **adapter_options)
        self.cap = get_backend(self.adapter, backend)

    def pid(self) -> int:
        return os.getpid()

    def run(self, shard: Any, layers: Sequence[int], edges: np.ndarray, part_dir: str, plan_hash: str) -> dict:
        from .shard import run_shard

        progress = None
        fault = os.environ.get(FAULT_ENV, "")
        if fault.partition(":")[0] == str(shard.index):
            progress = _FaultOnce(fault.partition(":")[2])
        t0 = time.perf_counter()
        part = run_shard(self.adapter, self.cap, shard, layers, edges=edges, progress=progress)
        t1 = time.perf_counter()
        part.save(part_dir, plan_hash=plan_hash, overwrite=True)
        return {"index": int(shard.index), "tokens": int(part.count), "compute_s": t1 - t0,
                "save_s": time.perf_counter() - t1, "pid": os.getpid()}

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(adapter, *args, **kwargs)`` on this replica: how other stages (N2G's explain_layer) use the pool.
        ``fn`` is a module-level function, sent by reference."""
        return fn(self.adapter, *args, **kwargs)


class actor_pool:
    """Context manager: a Ray actor pool of :class:`ShardWorker` replicas of ``spec`` (started, resource-checked,
    and shut down again if this call started Ray)."""

    def __init__(self, spec: Any, *, workers: int, address: str | None = None, gpus_per_worker: float | None = None,
                 threads_per_worker: int = 1, adapter_options: dict | None = None, backend: str | None = None):
        if workers < 1:
            raise ValueError(f"workers must be positive, got {workers}")
        self.spec, self.workers, self.address = spec, int(workers), address
        self.gpus, self.threads = gpus_per_worker, max(int(threads_per_worker or 1), 1)
        self.adapter_options, self.backend = dict(adapter_options or {}), backend

    def __enter__(self):
        ray = self.ray = _ray()
        from ray.util import ActorPool

        self.started = not ray.is_initialized()
        if self.started:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(os.cpu_count() or 1, self.workers * self.threads), include_dashboard=False,
                         log_to_driver=False)
        try:
            gpus = self.gpus
            if gpus is None:  # one GPU per actor where the cluster has GPUs
                gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= self.workers else 0.0
            cpus = 1.0 if gpus else float(self.threads)
            check_resources(ray, self.workers, gpus, cpus)
            options = dict(num_cpus=cpus, num_gpus=gpus, max_restarts=-1, max_task_retries=-1)
            env = {} if gpus else {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
            if os.environ.get(FAULT_ENV):  # the test hook reaches the actors, whenever the cluster started
                env[FAULT_ENV] = os.environ[FAULT_ENV]
            if env:
                options["runtime_env"] = {"env_vars": env}
            worker = ray.remote(**options)(ShardWorker)
            spec = self.spec.to_dict() if hasattr(self.spec, "to_dict") else dict(self.spec)
            if gpus and not spec.get("device"):
                spec["device"] = "cuda"
            self.actors = [worker.remote(spec, self.adapter_options, self.backend, None if gpus else self.threads)
                           for _ in range(self.workers)]
            self.pool = ActorPool(self.actors)
        except BaseException:
            self._close()
            raise
        return self

    def map(self, submit, items):
        """``submit(actor, item)`` for every item over the pool, results as they finish; a failed task raises
        :class:`~mri_lens.errors.ScanError` with its error."""
        ray = self.ray
        it = self.pool.map_unordered(submit, list(items))
        while True:
            try:
                yield next(it)
            except StopIteration:
                return
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None) or e
                raise ScanError(f"a shard failed on a Ray worker: {type(cause).__name__}: "
                                f"{str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}") from e

    def _close(self) -> None:
        for a in getattr(self, "actors", []):
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - an actor already gone
                pass
        if self.started:
            self.ray.shutdown()

    def __exit__(self, *exc) -> None:
        self._close()


def run_shards(spec: Any, plan: Any, todo: Sequence[int], run_dir: str, *, edges: np.ndarray,
               adapter_options: dict, backend: str | None, progress: bool, workers: int = 2,
               address: str | None = None, gpus_per_worker: float | None = None,
               threads_per_worker: int = 1) -> list[dict]:
    """Compute shards ``todo`` of ``plan`` on a Ray actor pool, each written to ``run_dir/part-<index>``.
    Returns the workers' summaries (index, tokens, compute and save seconds, pid) in completion order."""
    from tqdm.auto import tqdm

    todo = list(todo)
    if not todo:
        return []
    bar = tqdm(total=sum(plan.shard_tokens(i) for i in todo), unit="tok", desc="scan (ray)", disable=not progress,
               leave=False)
    out = []
    try:
        with actor_pool(spec, workers=min(workers, len(todo)), address=address, gpus_per_worker=gpus_per_worker,
                        threads_per_worker=threads_per_worker, adapter_options=adapter_options,
                        backend=backend) as pool:
            def submit(actor, i):
                return actor.run.remote(plan.shard(i), plan.layers, edges,
                                        os.path.join(run_dir, f"part-{i:05d}"), plan.hash)

            for summary in pool.map(submit, todo):
                out.append(summary)
                bar.update(plan.shard_tokens(summary["index"]))
    finally:
        bar.close()
    return out
