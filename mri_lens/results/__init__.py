"""Results: the :class:`Scan` a scan returns (per-neuron statistics, top-k examples, pooled per-document values
``[n_docs, n_layers, d_mlp]``, tokens and labels), the :class:`ScanPart` one shard produces, and the pooled arrays
behind both (in memory, one file per layer, or spread over a sharded run's parts, memory-mapped). Saving and
loading go through :mod:`mri_lens.storage`.
"""

from .parts import ScanPart
from .pooled import PartDocs, SplitPooled
from .scan import Scan
from .stats import NeuronStats, TopExamples, TopK

__all__ = ["Scan", "NeuronStats", "TopK", "TopExamples", "ScanPart", "PartDocs", "SplitPooled"]
