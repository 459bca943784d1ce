"""ScanOptions and the engines: every field checked by type and range on construction, one clear error naming it."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.scanning.options import DEFAULT_SHARD_BYTES, DEFAULT_SHARD_TOKENS, resolve_options


@pytest.mark.parametrize("field, value, match", [
    ("top_k", 2.5, "top_k must be a positive integer"),
    ("top_k", True, "top_k must be a positive integer"),
    ("top_k", 0, "top_k must be a positive integer"),
    ("layers", True, "layers must be"),
    ("layers", [], "layers must be"),
    ("layers", [1, -1], "layers must be"),
    ("layers", "0", "layers must be"),
    ("batch_size", 2.5, "batch_size must be a positive integer"),
    ("batch_size", "32", "batch_size must be a positive integer"),
    ("max_batch_tokens", 0, "max_batch_tokens must be a positive integer or None"),
    ("max_length", -3, "max_length must be a positive integer or None"),
    ("overflow", "wrap", "overflow must be one of"),
    ("pooling", "median", "unknown pooling 'median'"),
    ("pooling", ("mean", "mean"), "pooling names a pooling twice"),
    ("pooling", (), "at least one pooling"),
    ("pooling", 3, "pooling must be"),
    ("dtype", "int8", "dtype must be one of 'float32', 'float16'"),
    ("dtype", np.float16, "dtype must be one of"),
    ("include_bos", 1, "include_bos must be True or False"),
    ("prepend_bos", "yes", "prepend_bos must be True or False or None"),
    ("padding_side", "middle", "padding_side must be one of"),
    ("histogram_edges", [0.0, 0.0, 1.0], "strictly increasing"),
    ("histogram_edges", [1.0, 0.5], "strictly increasing"),
    ("histogram_edges", [0.0, float("nan")], "finite"),
    ("histogram_edges", [], "at least one edge"),
    ("histogram_edges", ["a"], "histogram_edges must be a list of numbers"),
    ("backend", "pytorch", "backend must be one of"),
    ("shard_tokens", 0, "shard_tokens must be a positive integer or None"),
    ("shard_bytes", 1.5, "shard_bytes must be a positive integer or None"),
])
def test_every_field_is_checked(field, value, match):
    with pytest.raises(ValueError, match=match):
        ml.ScanOptions(**{field: value})


def test_values_are_normalised():
    o = ml.ScanOptions(layers=np.int64(3), pooling="mean", histogram_edges=np.array([-1, 0, 2.5]),
                       include_bos=np.bool_(True), top_k=np.int32(7))
    assert o.layers == (3,) and o.pooling == ("mean",) and o.histogram_edges == (-1.0, 0.0, 2.5)
    assert o.include_bos is True and o.top_k == 7 and type(o.top_k) is int
    assert ml.ScanOptions(layers=[3, 1, 3]).layers == (1, 3)
    np.testing.assert_array_equal(ml.ScanOptions().edges(), ml.scanning.default_histogram_edges())
    with pytest.raises(AttributeError):
        o.top_k = 3  # frozen
    assert ml.ScanOptions() == ml.ScanOptions(pooling=["mean", "max"])


def test_signature_lists_every_field_documented():
    params = inspect.signature(ml.ScanOptions).parameters
    assert list(params) == ["layers", "batch_size", "max_batch_tokens", "max_length", "overflow", "pooling", "top_k",
                            "dtype", "include_bos", "prepend_bos", "padding_side", "histogram_edges", "backend",
                            "shard_tokens", "shard_bytes", "units"]
    doc = ml.ScanOptions.__doc__
    assert all(name in doc for name in params)
    named = [p for p in inspect.signature(ml.scan).parameters.values() if p.kind != p.VAR_KEYWORD]
    assert len(named) <= 8


def test_overrides_and_disk_defaults():
    base = ml.ScanOptions(top_k=5)
    assert resolve_options(base, {"layers": [2]}) == ml.ScanOptions(top_k=5, layers=[2])
    assert resolve_options(None, {}) == ml.ScanOptions()
    with pytest.raises(TypeError, match="unexpected option 'k'"):
        resolve_options(base, {"k": 3})
    with pytest.raises(TypeError, match=r"LocalEngine\(device=...\)"):
        resolve_options(base, {"device": "cpu"})
    with pytest.raises(ValueError, match="top_k must be"):
        resolve_options(base, {"top_k": -1})
    with pytest.raises(TypeError, match="options must be a ScanOptions"):
        resolve_options({"top_k": 3}, {})
    disk = ml.ScanOptions().with_shards_for_disk()
    assert (disk.shard_tokens, disk.shard_bytes) == (DEFAULT_SHARD_TOKENS, DEFAULT_SHARD_BYTES)
    assert ml.ScanOptions(shard_tokens=10).with_shards_for_disk().shard_bytes is None


@pytest.mark.parametrize("kw, match", [
    (dict(workers=0), "workers must be a positive integer"),
    (dict(workers=1.5), "workers must be a positive integer"),
    (dict(gpus_per_worker=-1), "gpus_per_worker must be a finite number >= 0"),
    (dict(gpus_per_worker=float("inf")), "gpus_per_worker must be a finite number"),
    (dict(threads_per_worker=0), "threads_per_worker must be a positive integer"),
    (dict(max_attempts=0), "max_attempts must be a positive integer"),
    (dict(connect_timeout_s=0), "connect_timeout_s must be a positive number"),
    (dict(address=""), "address must be a Ray cluster address"),
    (dict(stats="cuda"), "stats must be one of"),
])
def test_ray_engine_settings_are_checked_before_ray_starts(kw, match):
    with pytest.raises(ValueError, match=match):
        ml.RayEngine(**kw)
    try:
        import ray
    except ImportError:
        return
    assert not ray.is_initialized()


def test_local_engine_settings_are_checked():
    with pytest.raises(ValueError, match="stats must be one of"):
        ml.LocalEngine(stats="fast")
    with pytest.raises(ValueError, match="device must be"):
        ml.LocalEngine(device=0)
    assert ml.RayEngine(gpus_per_worker=1).gpus_per_worker == 1.0
