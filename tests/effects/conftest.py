"""Fixtures of the effect tests: the tiny LM through the Hugging Face backend, and short real documents."""

from __future__ import annotations

import pytest

import mri_lens as ml

from corpora import code_snippets


@pytest.fixture(scope="session")
def tiny_hf():
    return ml.models.tiny_lm(backend="hf", device="cpu")


@pytest.fixture(scope="session")
def docs() -> list[str]:
    """Three short standard-library snippets of different lengths (so a batch of them is padded)."""
    return [t[:n] for t, n in zip(code_snippets(3, 160), (160, 60, 110))]
