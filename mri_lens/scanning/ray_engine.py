"""The Ray engine: the scan's own shard function (:func:`mri_lens.scanning.shard.run_shard`) on an actor pool of model
replicas. It holds no scan logic of its own: the plan, the shards, what a shard computes and the merge are the
ones a single process uses, so the result equals a one-process scan.

Each actor loads the model once from a :class:`~mri_lens.model.bundled.ModelSpec` (never a pickled model). One actor
plans the scan (the same :func:`~mri_lens.scanning.plan.plan_scan` a single process runs, on the same model, so
the same plan and hash), and every actor's model identity is checked against the plan's; the driver holds the
corpus, the plan and the merge, never the model. Actors take shards (consecutive batches of the plan, sent as
plain arrays), write each finished shard to the run directory (a path on storage every node can reach) and return
a small summary.

It gives up instead of waiting forever: the cluster's resources are checked first (a request for GPUs or CPUs
that do not exist fails at once); ``address`` must be reachable within ``connect_timeout_s``; a shard whose worker
dies (a kill, an out-of-memory kill) is started again on a restarted actor at most ``max_attempts`` times in all,
then the scan raises :class:`~mri_lens.errors.ScanError` naming the shard; an exception inside a shard fails the
scan at once with that shard's error. Nothing is ever dropped: the same shard gives the same result.

``pip install "mri-lens[ray]"``. On a cluster, ``address=`` (``"auto"`` on a node of it) is the only change; see
the cluster recipe in docs/scale.md.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import deque
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import ScanError

__all__ = ["check_resources", "actor_pool", "plan_on_pool", "run_shards", "FAULT_ENV"]

# Test hook: "<shard index>:<marker file>[:<times>]" makes the actor that starts that shard kill itself (SIGKILL)
# after its first batch while the marker file holds fewer than <times> lines (default 1; each kill adds one), to
# show that a dead actor's shard is redone, and that a shard that kills its worker every time fails the scan.
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


def _check_reachable(address: str, timeout_s: float) -> None:
    """Refuse, within ``timeout_s``, a cluster address nothing answers at (a TCP connection to its port)."""
    if address in ("auto", "local"):
        return  # resolved by Ray from this node's running cluster; it fails at once when there is none
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ScanError(f"the Ray address {address!r} is not 'auto' or host:port (e.g. 'head-node:6379')")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as e:
        why = "no answer" if isinstance(e, socket.timeout) else (e.strerror or type(e).__name__)
        raise ScanError(f"cannot reach the Ray cluster at {address} within {timeout_s:g} s ({why}); check the "
                        "address (the head node's port, default 6379), or pass address=None for a local "
                        "cluster") from None


def _connect(ray: Any, address: str, timeout_s: float) -> None:
    """``ray.init(address=...)`` within ``timeout_s`` seconds: the address must answer at once (a TCP connection
    to its port), and the connection must be made in time (Ray's own client retries for many minutes against a
    port that answers but is not a Ray cluster's)."""
    import threading

    _check_reachable(address, timeout_s)
    box: dict[str, Any] = {}

    def connect() -> None:
        try:
            ray.init(address=address, log_to_driver=False)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t0 = time.monotonic()
    thread = threading.Thread(target=connect, name="mri_lens-ray-connect", daemon=True)
    thread.start()
    thread.join(max(timeout_s - (time.monotonic() - t0), 0.1))
    if thread.is_alive():
        raise ScanError(f"cannot connect to the Ray cluster at {address} within {timeout_s:g} s (the port answers "
                        "but no Ray cluster does); check the address, and start a new Python process before trying "
                        "again (this one's Ray is left half-connected)")
    if "error" in box:
        raise box["error"]


class _Fault:
    """The progress object of a shard under the test hook: kills the process after the first batch while the
    marker file holds fewer than ``times`` lines."""

    def __init__(self, marker: str, times: int):
        self.marker, self.times = marker, times

    def update(self, _n: int) -> None:
        try:
            with open(self.marker, encoding="utf-8") as f:
                if len(f.readlines()) >= self.times:
                    return
        except FileNotFoundError:
            pass
        with open(self.marker, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def _fault_for(index: int) -> _Fault | None:
    shard, _, rest = os.environ.get(FAULT_ENV, "").partition(":")
    if shard != str(index):
        return None
    marker, _, times = rest.partition(":")
    return _Fault(marker, int(times) if times.isdigit() else 1)


class ShardWorker:
    """An actor: one model replica, loaded once, planning scans and running shards of any plan of that model."""

    def __init__(self, spec: dict, adapter_options: dict, backend: str | None, threads: int | None):
        import torch

        from ..model.adapter import as_adapter
        from ..model.bundled import ModelSpec
        from ..model.capture import get_backend

        if threads:  # every thread pool of this process: torch's, and numba's for the statistics kernel
            torch.set_num_threads(int(threads))
            try:
                import numba

                numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
            except ImportError:
                pass
        self.adapter = as_adapter(ModelSpec(**spec).load(),
                                  **{k: v for k, v in adapter_options.items() if v is not None})
        self.cap = get_backend(self.adapter, backend)
        self._identity = None

    def pid(self) -> int:
        return os.getpid()

    def identity(self) -> dict:
        """The model identity a plan records (:func:`mri_lens.scanning.plan.model_identity`), computed once."""
        from .plan import model_identity

        if self._identity is None:
            self._identity = model_identity(self.adapter)
        return self._identity

    def plan(self, corpus: Any, options: Any) -> tuple[Any, dict]:
        """The plan of a scan of ``corpus`` with ``options`` on this replica, and the model facts it records."""
        from .plan import model_facts, plan_scan

        plan = plan_scan(self.adapter, corpus, options, self.cap.name)
        self._identity = plan.model  # computed by the plan (a hash of every weight): not twice
        return plan, model_facts(self.adapter, self.cap)

    def run(self, shard: Any, layers: Sequence[int], edges: np.ndarray, part_dir: str, plan_hash: str,
            stats: str = "auto", units: Any = None) -> dict:
        from ..model.units import as_units
        from .shard import run_shard

        if units is not None or not self.cap.units.is_default:  # the plan's units (SAE latents...), on this device
            self.cap.units = as_units(units).to(self.adapter.device)
        t0 = time.perf_counter()
        part = run_shard(self.adapter, self.cap, shard, layers, edges=edges, progress=_fault_for(shard.index),
                         stats=stats)
        t1 = time.perf_counter()
        part.save(part_dir, plan_hash=plan_hash, overwrite=True)
        return {"index": int(shard.index), "tokens": int(part.count), "compute_s": t1 - t0,
                "save_s": time.perf_counter() - t1, "pid": os.getpid()}

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(adapter, *args, **kwargs)`` on this replica: how other stages (N2G's explain_layer) use the pool.
        ``fn`` is a module-level function, sent by reference."""
        return fn(self.adapter, *args, **kwargs)


class _Items:
    """A fixed list of items for :meth:`actor_pool.run` (the feed protocol: ``next(block)``)."""

    def __init__(self, items):
        self.items = deque(items)

    def next(self, block: bool = True):
        return self.items.popleft() if self.items else None


class actor_pool:
    """Context manager: a Ray actor pool of :class:`ShardWorker` replicas of ``spec`` (started, resource-checked,
    and shut down again if this call started Ray). ``max_attempts``: starts of one item before a worker death
    on it fails the run; ``connect_timeout_s``: the bound on reaching ``address``."""

    def __init__(self, spec: Any, *, workers: int, address: str | None = None, gpus_per_worker: float | None = None,
                 threads_per_worker: int = 1, adapter_options: dict | None = None, backend: str | None = None,
                 max_attempts: int = 3, connect_timeout_s: float = 60.0):
        if workers < 1:
            raise ValueError(f"workers must be positive, got {workers}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be positive, got {max_attempts}")
        self.spec, self.workers, self.address = spec, int(workers), address
        self.gpus, self.threads = gpus_per_worker, max(int(threads_per_worker or 1), 1)
        self.adapter_options, self.backend = dict(adapter_options or {}), backend
        self.max_attempts, self.connect_timeout_s = int(max_attempts), float(connect_timeout_s)

    def __enter__(self):
        ray = self.ray = _ray()
        self.started = not ray.is_initialized()
        if self.started:
            if self.address:
                _connect(ray, self.address, self.connect_timeout_s)
            else:
                ray.init(num_cpus=max(os.cpu_count() or 1, self.workers * self.threads), include_dashboard=False,
                         log_to_driver=False)
        try:
            self._start_actors(ray)
        except BaseException:
            self._close()
            raise
        return self

    def _start_actors(self, ray: Any) -> None:
        gpus = self.gpus
        if gpus is None:  # one GPU per actor where the cluster has GPUs
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= self.workers else 0.0
        cpus = 1.0 if gpus else float(self.threads)
        check_resources(ray, self.workers, gpus, cpus)
        # a dead actor is restarted (its model loaded again); its task is not retried by Ray but by run(), which
        # counts the attempts of each item
        options = dict(num_cpus=cpus, num_gpus=gpus, max_restarts=-1, max_task_retries=0)
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

    def run(self, submit: Callable[[Any, Any], Any], feed: Any, *, what: str = "task") -> Iterator[tuple[Any, Any]]:
        """``submit(actor, item)`` for every item ``feed.next(block)`` hands out (None: no more; ``"wait"``:
        none now), on idle actors; yields ``(item, result)`` as they finish. A worker that dies on an item is
        restarted and the item started again, ``max_attempts`` times in all, then :class:`ScanError` names it;
        an exception inside an item raises :class:`ScanError` with it at once."""
        ray = self.ray
        idle, running, retry = deque(self.actors), {}, deque()
        exhausted = False
        while True:
            while idle and (retry or not exhausted):
                item, attempt = retry.popleft() if retry else (feed.next(block=not running), 0)
                if item is None:
                    exhausted = True
                    break
                if isinstance(item, str) and item == "wait":
                    break
                actor = idle.popleft()
                running[submit(actor, item)] = (actor, item, attempt + 1)
            if not running:
                if exhausted and not retry:
                    return
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=None if exhausted or retry else 1.0)
            for ref in done:
                actor, item, attempt = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    raise self._task_error(e, what, item) from e
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                    if attempt >= self.max_attempts:
                        raise ScanError(
                            f"{what} {item} killed its Ray worker {attempt} times (max_attempts={self.max_attempts}):"
                            f" {type(e).__name__}; a worker dying on the same {what} again and again usually ran out"
                            " of memory: lower shard_bytes, batch_size or max_batch_tokens, or give workers more "
                            "memory") from e
                    retry.append((item, attempt))
                    idle.append(actor)  # restarted by Ray; others get work first
                    continue
                idle.appendleft(actor)
                yield item, result

    @staticmethod
    def _task_error(e: Exception, what: str, item: Any) -> ScanError:
        cause = getattr(e, "cause", None) or e
        text = str(cause).strip()
        return ScanError(f"{what} {item} failed on a Ray worker: {type(cause).__name__}: "
                         f"{text.splitlines()[-1] if text else ''}")

    def map(self, submit: Callable[[Any, Any], Any], items: Sequence[Any], *, what: str = "task") -> Iterator[Any]:
        """``submit(actor, item)`` for every item over the pool, results as they finish (see :meth:`run`)."""
        for _, result in self.run(submit, _Items(items), what=what):
            yield result

    def ask(self, method: str, *args: Any, what: str = "task") -> Any:
        """``actor.<method>(*args)`` on one actor (retried on a worker death as :meth:`run` does)."""
        return next(iter(self.map(lambda a, _: getattr(a, method).remote(*args), [0], what=what)))

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


def plan_on_pool(pool: actor_pool, corpus: Any, options: Any) -> tuple[Any, dict]:
    """The scan's plan, made by one actor, and the model facts it records; every actor's model identity must be
    the plan's (workers that loaded different weights or tokenizers are refused)."""
    plan, facts = pool.ask("plan", corpus, options, what="planning")
    try:
        identities = pool.ray.get([a.identity.remote() for a in pool.actors])
    except pool.ray.exceptions.RayError as e:
        raise ScanError(f"a Ray worker failed while its model identity was read: {type(e).__name__}") from e
    differ = [i for i, ident in enumerate(identities) if ident != plan.model]
    if differ:
        keys = sorted(k for k in plan.model if identities[differ[0]].get(k) != plan.model.get(k))
        raise ScanError(f"the Ray workers loaded different models from one spec (worker {differ[0]} differs in "
                        f"{keys}): every node must hold the same model files")
    return plan, facts


def run_shards(pool: actor_pool, plan: Any, queue: Any, part_path: Callable[[int], str], *, bar: Any = None,
               stats: str = "auto", units: Any = None) -> list[dict]:
    """Compute the shards ``queue`` hands out (``next(block)``, ``done(i)``) on ``pool``, each written to
    ``part_path(i)``. Returns the workers' summaries (index, tokens, compute and save seconds, pid) in completion
    order."""
    edges = np.asarray(plan.options["histogram_edges"], dtype=np.float32)
    out = []
    units_ref = None if units is None else pool.ray.put(units)  # stored once, not sent with every shard

    def submit(actor, i):
        return actor.run.remote(plan.shard(i), plan.layers, edges, part_path(i), plan.hash, stats, units_ref)

    for i, summary in pool.run(submit, queue, what="shard"):
        queue.done(i)
        out.append(summary)
        if bar is not None:
            bar.update(plan.shard_tokens(i) + queue.pop_skipped_tokens())
    return out
