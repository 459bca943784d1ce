"""Shared fixtures: real models loaded once per session, small real corpora."""

from __future__ import annotations

import os
import warnings

import pytest

import mri_lens as ml

from corpora import PROSE, code_snippets

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", message=".*attention_mask.*")


@pytest.fixture(scope="session")
def tiny():
    return ml.models.tiny_lm(device="cpu")


@pytest.fixture(scope="session")
def minilm():
    return ml.models.minilm(device="cpu")


@pytest.fixture(scope="session")
def code_prose() -> ml.Corpus:
    code = code_snippets()
    return ml.Corpus(code + PROSE, ["code"] * len(code) + ["prose"] * len(PROSE))


@pytest.fixture(scope="session")
def reviews() -> ml.Corpus:
    c = ml.datasets.drug_reviews(categories=["positive", "negative"])
    return c.subset(range(40))


@pytest.fixture(scope="session")
def tiny_scan(tiny, code_prose):
    return ml.scan(tiny, code_prose, batch_size=8, pooling=("mean", "max", "min", "last"), progress=False)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory, minilm):
    """``mri-lens demo --limit 60``, the demo's only run of the session (shared by test_pipelines.py, test_cli.py
    and render/test_browser.py): ``{"out": its output directory, "stdout": what it printed}``."""
    import contextlib
    import io

    from mri_lens.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["demo", "--out", str(out), "--limit", "60", "--quiet"]) == 0
    return {"out": str(out), "stdout": buf.getvalue()}


@pytest.fixture(scope="session")
def code_scan(tiny):
    """The tiny LM on 120 standard-library documents, split into windows, top 20 examples per neuron (N2G)."""
    return ml.scan(tiny, ml.datasets.stdlib_code(n_docs=120), overflow="windows", top_k=20, progress=False)
