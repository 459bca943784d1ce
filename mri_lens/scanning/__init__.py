"""The scan engine: a corpus through a model once.

A plan fixes the tokens, windows, the length-sorted batch plan and the shards, and hashes them with the corpus,
the model and the options (:mod:`.plan`, :mod:`.batching`); one shard function runs a shard's batches and folds
their activations into statistics, top-k lists and pooled values (:mod:`.shard`, numba :mod:`.kernels`,
:mod:`.histogram`); an exact merge joins shards or whole scans (:mod:`.merge`). Engines run the same shard function
in this process or on a Ray actor pool (:mod:`.ray_engine`); :mod:`.run` is the ``scan`` entry point.
"""

from .batching import plan_batches
from .histogram import default_histogram_edges
from .merge import merge_scans
from .plan import POOLINGS
from .run import scan

__all__ = ["scan", "merge_scans", "plan_batches", "default_histogram_edges", "POOLINGS"]
