"""Fixtures shared by the result tests."""

from __future__ import annotations

import pytest

import mri_lens as ml


@pytest.fixture(scope="package")
def sharded(tiny, code_prose, tmp_path_factory):
    """A scan of the tiny LM computed in shards into ``out``: ``(out, its scan)``; its pooled values stay in the
    run's parts. Shared by the parts and pooled-layout tests, which only read it (they change copies)."""
    out = tmp_path_factory.mktemp("sharded") / "out"
    s = ml.scan(tiny, code_prose, out=out, shard_tokens=400, batch_size=8, pooling=("mean", "max"), progress=False)
    return str(out), s
