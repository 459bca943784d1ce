"""The scan engine: a corpus through a model once.

What a scan computes is a frozen, validated :class:`ScanOptions` (:mod:`.options`). A plan fixes the tokens,
windows, the length-sorted batch plan and the shards, and hashes them with the corpus, the model and the options
(:mod:`.plan`, :mod:`.batching`); one shard function runs a shard's batches and folds their activations into
statistics, top-k lists and pooled values (:mod:`.shard`, numba :mod:`.kernels`, :mod:`.histogram`); an exact
merge joins shards or whole scans (:mod:`.merge`). Engines run the same shard function in this process or on a
Ray actor pool (:class:`LocalEngine`, :class:`RayEngine`: :mod:`.engines`, :mod:`.ray_engine`); an output
directory owns the plan, the parts, resume and the merge of a scan written to disk (:mod:`.outdir`); :mod:`.run`
is the ``scan`` entry point.
"""

from .batching import plan_batches
from .engines import LocalEngine, RayEngine
from .histogram import default_histogram_edges
from .merge import merge_scans
from .options import POOLINGS, ScanOptions
from .run import scan

__all__ = ["scan", "ScanOptions", "LocalEngine", "RayEngine", "merge_scans", "plan_batches",
           "default_histogram_edges", "POOLINGS"]
