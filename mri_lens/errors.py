"""Errors raised by mri_lens. Every user-facing failure is one of these, with a message that says what to do."""

from __future__ import annotations

__all__ = ["MriLensError", "CorpusError", "ModelAdapterError", "ScanError", "ScanFileError", "GraphError",
           "CategoryError"]


class MriLensError(Exception):
    """Base class of every error mri_lens raises on purpose."""


class CorpusError(MriLensError, ValueError):
    """The corpus is empty, malformed, or does not match its labels."""


class ModelAdapterError(MriLensError, ValueError):
    """The model cannot be scanned (missing MLP hooks, no tokenizer, unknown architecture...)."""


class ScanError(MriLensError, RuntimeError):
    """The scan could not be computed (non-finite activations, bad arguments...)."""


class ScanFileError(MriLensError, OSError):
    """A saved result is missing, truncated, corrupted, foreign or from an unsupported schema version."""


class GraphError(MriLensError, ValueError):
    """The co-activation graph cannot be built or analysed with these inputs (bad parameter, unknown category...)."""


class CategoryError(GraphError, ScanError, CorpusError):
    """A category (label name) that the corpus, scan, maps or graph does not have, or too few categories.

    The same error wherever categories are named (it is a ``GraphError``, a ``ScanError``, a ``CorpusError`` and a
    ``ValueError``, so code that caught any of those before keeps working)."""
