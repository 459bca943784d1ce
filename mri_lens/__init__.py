"""mri_lens: neuron-level interpretability lenses for TransformerLens models.

The pipeline, one package per role, each importing only the ones before it:
``model`` (the adapter: TL 2 / TL 4 / Hugging Face) and ``data`` (the corpus) -> ``scanning`` (plan, shards,
merge, engines) -> ``results`` (the :class:`Scan`) with ``storage`` (safe saves and loads) underneath ->
``lenses`` (``mri``, ``neuroscope``, ``n2g``) -> ``render`` (HTML pages, reports) -> ``pipelines`` and the CLI.

>>> import mri_lens as ml
>>> model = ml.models.tiny_lm()                        # doctest: +SKIP
>>> scan = ml.scan(model, ["def f(x):", "import os"])  # doctest: +SKIP
>>> maps = ml.mri.RegionMaps(grid=6).fit(scan)          # doctest: +SKIP
"""

from .version import __version__
from .data import Corpus, datasets
from .errors import (CategoryError, CorpusError, GraphError, ModelAdapterError, MriLensError, ScanError,
                     ScanFileError)
from .model import HFModel, ModelSpec, load_model
from .model import bundled as models
from .model import units
from .results import Scan
from .scanning import LocalEngine, RayEngine, ScanOptions, merge_scans, scan
from .lenses import mri, n2g, neuroscope
from . import effects
from .render import report

__all__ = [
    "__version__", "scan", "ScanOptions", "LocalEngine", "RayEngine", "Scan", "merge_scans", "Corpus",
    "load_model", "ModelSpec", "HFModel", "models", "units",
    "datasets", "MriLensError", "ScanError", "ScanFileError", "CorpusError", "CategoryError", "GraphError",
    "ModelAdapterError", "mri", "neuroscope", "n2g", "report", "effects",
]
