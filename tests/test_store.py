"""Saved scans: exact round trip, atomic writes, clear errors for damaged or foreign directories."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import mri_lens as ml
from mri_lens import Scan, ScanFileError

from saved import data_path


def _assert_same(a: Scan, b: Scan):
    assert a.layers == b.layers and a.label_names == b.label_names and a.meta == b.meta
    for p in a.poolings:
        np.testing.assert_array_equal(a.pooled(p), b.pooled(p))
    for name in ("mean", "std", "min", "max", "frac_positive", "hist_counts", "hist_edges"):
        np.testing.assert_array_equal(getattr(a.stats, name), getattr(b.stats, name))
    assert a.stats.count == b.stats.count
    for t in ("top", "bottom"):
        for f in ("values", "docs", "positions"):
            np.testing.assert_array_equal(getattr(getattr(a, t), f), getattr(getattr(b, t), f))
    np.testing.assert_array_equal(a.token_ids, b.token_ids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.tokenizer_json == b.tokenizer_json


def test_round_trip_exact(tiny_scan, tmp_path):
    path = tiny_scan.save(tmp_path / "run")
    loaded = Scan.load(path)
    _assert_same(tiny_scan, loaded)
    assert loaded.str_tokens(0) == tiny_scan.str_tokens(0)
    assert loaded.top_examples(0, 3).max_tokens() == tiny_scan.top_examples(0, 3).max_tokens()
    # Overwriting is atomic: no temporary directory is left behind, the new content is complete.
    tiny_scan.save(path)
    assert sorted(os.listdir(tmp_path)) == ["run"]
    _assert_same(tiny_scan, Scan.load(path))


def test_no_machine_path_in_saved_metadata(tiny_scan, tmp_path):
    path = tiny_scan.save(tmp_path / "run")
    with open(os.path.join(path, "manifest.json")) as f:
        text = f.read()
    assert str(tmp_path) not in text and os.path.expanduser("~") + "/" not in text


def test_missing_and_foreign_directories(tmp_path):
    with pytest.raises(ScanFileError, match="no such directory"):
        Scan.load(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScanFileError, match="no manifest.json"):
        Scan.load(tmp_path / "empty")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "manifest.json").write_text(json.dumps({"format": "something.else"}))
    with pytest.raises(ScanFileError, match="holds 'something.else', not a saved mri_lens.scan"):
        Scan.load(tmp_path / "foreign")
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ScanFileError, match="not a saved mri_lens.scan"):
        Scan.load(tmp_path / "list")


def test_truncated_and_corrupted(tiny_scan, tmp_path):
    path = tiny_scan.save(tmp_path / "run")
    tensors = data_path(path)
    data = open(tensors, "rb").read()
    with open(tensors, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ScanFileError, match="corrupted or truncated"):
        Scan.load(path)
    flipped = bytearray(data)
    flipped[len(flipped) // 3] ^= 0xFF
    with open(tensors, "wb") as f:
        f.write(bytes(flipped))
    with pytest.raises(ScanFileError, match="checksum mismatch"):
        Scan.load(path)
    path = tiny_scan.save(tmp_path / "run2")
    manifest = os.path.join(path, "manifest.json")
    text = open(manifest).read()
    with open(manifest, "w") as f:
        f.write(text[: len(text) // 2])
    with pytest.raises(ScanFileError, match="not valid JSON"):
        Scan.load(path)


def test_newer_schema_and_inconsistent_shapes(tiny_scan, tmp_path):
    path = tiny_scan.save(tmp_path / "run")
    manifest = os.path.join(path, "manifest.json")
    m = json.load(open(manifest))
    m["schema_version"] = 99
    json.dump(m, open(manifest, "w"))
    with pytest.raises(ScanFileError, match="schema version 99"):
        Scan.load(path)
    m["schema_version"] = 1
    m["meta"]["layers"] = [0, 1]  # arrays say 4 layers
    json.dump(m, open(manifest, "w"))
    with pytest.raises(ScanFileError, match="not a consistent saved scan"):
        Scan.load(path)


def test_a_failed_save_leaves_the_old_result(tiny_scan, tmp_path):
    path = tiny_scan.save(tmp_path / "run")
    import dataclasses

    bad = dataclasses.replace(tiny_scan, meta={"x": float("nan")})
    with pytest.raises(ValueError):
        bad.save(path)
    _assert_same(tiny_scan, Scan.load(path))
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_top_examples_views(tiny_scan):
    ex = tiny_scan.top_examples(layer=2, neuron=7, k=5)
    assert len(ex) == 5 and list(ex.values) == sorted(ex.values, reverse=True)
    toks, at = ex.snippet(0, before=3, after=2)
    assert toks[at] == ex.max_tokens()[0] and len(toks) <= 6
    df = ex.to_pandas()
    assert list(df["doc"]) == list(ex.docs)
    bottom = tiny_scan.top_examples(2, 7, which="bottom")
    assert list(bottom.values) == sorted(bottom.values)
    with pytest.raises(ml.ScanError, match="neuron must be"):
        tiny_scan.top_examples(0, 10_000)


@pytest.mark.parametrize("k", [-3, 0, 2.5, "5", True])
def test_top_examples_bad_k(tiny_scan, k):
    with pytest.raises(ml.ScanError, match="k must be None .* or a positive integer"):
        tiny_scan.top_examples(2, 7, k=k)
    assert len(tiny_scan.top_examples(2, 7, k=np.int64(2))) == 2


@pytest.mark.parametrize("q", [1.5, -0.1, float("nan"), np.array([0.5, 2.0])])
def test_quantile_outside_unit_interval(tiny_scan, q):
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\]"):
        tiny_scan.stats.quantile(q)
    assert tiny_scan.stats.quantile(np.array([0.0, 1.0])).shape[0] == 2


def test_html_views_escape_tokens(tiny, tmp_path):
    nasty = ml.Corpus(["<script>alert(1)</script> & \"quotes\" 'x'\nnext", "plain text here"], ["<b>", "ok"])
    s = ml.scan(tiny, nasty, progress=False)
    ex = s.top_examples(0, 0)
    html = ex._repr_html_() + s._repr_html_()
    assert "<script>" not in html and "&lt;" in html
    assert "&lt;b&gt;" in ex._repr_html_() and "<td><b></td>" not in ex._repr_html_()
