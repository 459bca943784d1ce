"""UMAP in worker processes, for the region maps: umap-learn imported with numba's on-disk cache turned on
(:func:`_import_umap`), exact nearest neighbours (:func:`exact_knn`), one seeded fit per layer (:func:`_embed`),
the loky worker pool that fits layers in parallel (:func:`embed_layers`), and the warm-up / compile entry points
that start and JIT-compile those workers ahead of time (:func:`warm_up`, :func:`compile_umap`). Knows nothing of
maps or scans: point clouds in, low-dimensional (by default 2-D) coordinates out."""

from __future__ import annotations

import os
import sys
import warnings

from typing import Iterable

import numpy as np

from ...storage.write import interprocess_lock

__all__ = ["compile_umap", "embed_layers", "exact_knn", "warm_up"]


def exact_knn(points: np.ndarray, k: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k nearest neighbours of every point, itself included first:
    ``[n_points, n_features] -> (indices int32 [n_points, k], distances float32 [n_points, k])``.

    Blockwise matrix products (float64), ties broken by index. Written here rather than left to umap-learn because
    its nearest-neighbour code is JIT-compiled on first use in every process, which cost more than the search
    itself for maps of a few thousand points (bench/RESULTS.md).
    """
    x = np.asarray(points, dtype=np.float64)
    sq = (x ** 2).sum(1)
    n = len(x)
    idx = np.empty((n, k), np.int32)
    dist = np.empty((n, k), np.float32)
    for s in range(0, n, block):
        d2 = sq[s:s + block, None] + sq[None, :] - 2.0 * (x[s:s + block] @ x.T)
        np.maximum(d2, 0, out=d2)
        rows = np.arange(len(d2))
        d2[rows, s + rows] = -1.0  # a point is its own first neighbour, even among exact duplicates
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        pd2 = np.take_along_axis(d2, part, 1)
        order = np.lexsort((part, pd2), axis=1)  # by distance, then by index: deterministic ties
        idx[s:s + block] = np.take_along_axis(part, order, 1)
        dist[s:s + block] = np.sqrt(np.maximum(np.take_along_axis(pd2, order, 1), 0))
    return idx, dist


_UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.spectral", "umap.utils")
_umap_cache_on = False  # per process: set once umap-learn's dispatchers cache to disk


def _import_umap():
    """umap-learn, with numba's on-disk cache turned on for its own jitted functions.

    pynndescent caches its numba code, but umap-learn's module-level functions (fuzzy simplicial set, layout
    optimisation, ...) are not marked ``cache=True``, so every new process compiled them again before its first
    map (a new process's first fit is several times faster once they are cached, with identical coordinates:
    bench/RESULTS.md). ``Dispatcher.enable_caching`` is what ``cache=True`` does at decoration time.
    """
    if "umap" not in sys.modules:
        # The first import in a fresh environment compiles and caches numba code (seconds of CPU): parallel workers
        # take turns, so one compiles and the others load its cache.
        with interprocess_lock("umap-import"):
            import umap  # noqa: F401 - the first import, under the lock
    import umap

    global _umap_cache_on
    if not _umap_cache_on:
        _umap_cache_on = True
        try:
            from numba.core.dispatcher import Dispatcher

            for mod in filter(None, map(sys.modules.get, _UMAP_MODULES)):  # another layout: fewer modules
                for obj in list(vars(mod).values()):
                    if isinstance(obj, Dispatcher) and type(getattr(obj, "_cache", None)).__name__ == "NullCache":
                        obj.enable_caching()
        except Exception:  # an optimisation only: another numba or umap-learn layout just compiles as before
            pass
    return umap


def _embed(points: np.ndarray, n_neighbors: int, min_dist: float, n_epochs: int | None, seed: int,
           n_components: int = 2) -> np.ndarray:
    """One UMAP fit: ``[n_points, n_features] -> [n_points, n_components]`` float32 (runs in a worker process)."""
    umap = _import_umap()

    k = min(n_neighbors, len(points) - 1)
    knn = exact_knn(points, k)
    with warnings.catch_warnings():
        # umap-learn warns that a seed disables its threading; parallelism is across layers instead.
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_components=n_components, n_neighbors=k, min_dist=min_dist, n_epochs=n_epochs,
                            random_state=seed, n_jobs=1, precomputed_knn=(knn[0], knn[1], None),
                            init=_start(umap, points, knn, k, n_epochs))
        out = reducer.fit_transform(points)
    return np.asarray(out, dtype=np.float32)


def _start(umap, points: np.ndarray, knn: tuple[np.ndarray, np.ndarray], k: int, n_epochs: int | None) -> str:
    """umap-learn's ``init``: its spectral start, unless the graph it lays out falls apart into several components
    (many identical points: first-token pooling of texts that often start alike). Its start of such a graph differs
    from one process to the next with the same seed; PCA's start does not. The graph is umap-learn's own: the fuzzy
    set of the neighbours without the edges it drops before the layout (below max weight / epochs)."""
    from scipy.sparse.csgraph import connected_components

    graph = umap.umap_.fuzzy_simplicial_set(points, k, None, "euclidean", knn_indices=knn[0], knn_dists=knn[1])[0]
    default = 500 if graph.shape[0] <= 10000 else 200
    epochs = n_epochs if n_epochs is not None and n_epochs > 10 else default
    graph.data[graph.data < graph.data.max() / float(epochs)] = 0.0
    graph.eliminate_zeros()
    return "spectral" if connected_components(graph, directed=False)[0] == 1 else "pca"


def _n_workers(n_jobs: int | None, n_tasks: int) -> int:
    if n_jobs is None or n_jobs < 0:
        n_jobs = os.cpu_count() or 1
    return max(1, min(n_jobs, n_tasks))


def _warm_task(seed: int) -> int:
    # One worker at a time (the first import of umap-learn and the first embedding compile numba code): the next
    # worker loads what the first cached instead of compiling the same code beside it and beside the scan.
    with interprocess_lock("umap-warm-up"):
        rng = np.random.default_rng(seed)
        _embed(rng.normal(size=(64, 8)).astype(np.float32), 15, 0.1, 10, seed)
    return os.getpid()


def compile_umap() -> None:
    """Import umap-learn and embed a small random cloud once in this process, so numba compiles umap-learn's and
    pynndescent's code and caches it on disk (the slow part of a first run in a new environment; later processes,
    the map workers included, load it: see :func:`_import_umap`)."""
    _warm_task(0)


def warm_up(n_jobs: int = -1, n_layers: int = 64):
    """Start the worker processes that :meth:`RegionMaps.fit` uses and JIT-compile umap-learn in them, in a
    background thread; returns the thread (``join()`` it to wait).

    A fresh worker spends seconds importing umap-learn and loading its cached numba code before its first map
    (much longer before ``mri-lens compile`` has cached it); calling this before a long scan overlaps that with the
    scan (``mri-lens demo`` does; bench/RESULTS.md has the timings). The workers are joblib's reusable loky
    workers, so a later ``fit`` with the same ``n_jobs`` finds them ready.
    """
    import threading

    from joblib import Parallel, delayed

    n = _n_workers(n_jobs, n_layers)
    if n <= 1:
        return threading.Thread(target=lambda: None)

    def run():
        Parallel(n_jobs=n, backend="loky")(delayed(_warm_task)(i) for i in range(n))

    t = threading.Thread(target=run, name="mri_lens-warm-up", daemon=True)
    t.start()
    return t


def embed_layers(points: Iterable[np.ndarray], n_neighbors: int, min_dist: float, n_epochs: int | None,
                 seed: int, *, n_jobs: int | None = -1, progress: bool = True,
                 n_layers: int | None = None, n_components: int = 2) -> list[np.ndarray]:
    """One UMAP map per layer: ``L x [n_points, n_features] -> L x [n_points, n_components]`` float32, in the
    order given.

    ``points`` may be a generator (``n_layers`` then says how many): layers are taken as workers are ready for
    them, so memory holds only the layers in flight. Sequential when ``n_jobs`` gives one worker (or there is one
    layer), else in joblib's reusable loky worker processes (one layer per task; see :func:`warm_up`). The same
    inputs and seed give identical maps either way.
    """
    from tqdm.auto import tqdm

    args = (n_neighbors, min_dist, n_epochs, seed, n_components)
    if n_layers is None:
        points = list(points)
        n_layers = len(points)
    n_jobs = _n_workers(n_jobs, n_layers)
    if n_jobs <= 1:
        return [_embed(p, *args) for p in tqdm(points, total=n_layers, desc="region maps", unit="layer",
                                                disable=not progress)]
    from joblib import Parallel, delayed

    # processes, not threads: umap's numba code holds the GIL; each worker fits whole layers, one in flight each.
    results = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator", pre_dispatch="n_jobs")(
        delayed(_embed)(p, *args) for p in points)
    return list(tqdm(results, total=n_layers, desc=f"region maps ({n_jobs} processes)", unit="layer",
                     disable=not progress))
