"""Errors raised by mri_lens. Every user-facing failure is one of these, with a message that says what to do."""

from __future__ import annotations

__all__ = ["MriLensError", "CorpusError", "ModelAdapterError", "ScanError", "ScanFileError"]


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
