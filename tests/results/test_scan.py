"""Saved scans: exact round trip, atomic writes, clear errors for damaged or foreign directories."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import mri_lens as ml
from mri_lens import Scan, ScanFileError

from saved import data_path, manifest, write_manifest


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
    m = manifest(path)
    m["schema_version"] = 99
    write_manifest(path, m)  # sealed again: the check behind the seal is what is tested
    with pytest.raises(ScanFileError, match="schema version 99"):
        Scan.load(path)
    m["schema_version"] = 1
    m["meta"]["layers"] = [0, 1]  # arrays say 4 layers
    write_manifest(path, m)
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


def _layer_quantile_before(stats, li, q):
    """The Neuroscope lens's own pooled-histogram quantile before it became NeuronStats.layer_quantile."""
    counts = stats.hist_counts[li].sum(0).astype(np.float64)
    edges = np.asarray(stats.hist_edges, dtype=np.float64)
    lo = np.concatenate([[float(stats.min[li].min())], edges])
    hi = np.concatenate([edges, [float(stats.max[li].max())]])
    lo = np.clip(lo, stats.min[li].min(), stats.max[li].max())
    hi = np.clip(hi, stats.min[li].min(), stats.max[li].max())
    cum = np.cumsum(counts)
    target = q * cum[-1]
    b = int(min((cum < target).sum(), len(cum) - 1))
    prev = cum[b - 1] if b > 0 else 0.0
    frac = (target - prev) / counts[b] if counts[b] > 0 else 0.0
    return float(lo[b] + np.clip(frac, 0, 1) * (hi[b] - lo[b]))


def test_layer_quantile_is_the_quantile_of_the_pooled_histogram(tiny_scan):
    s = tiny_scan.stats
    qs = (0.0, 0.001, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0)
    for li in range(len(tiny_scan.layers)):
        got = [s.layer_quantile(q, li) for q in qs]
        assert all(isinstance(g, float) for g in got)
        assert got == [_layer_quantile_before(s, li, q) for q in qs]  # exactly today's numbers
        np.testing.assert_array_equal(s.layer_quantile(np.array(qs), li), got)
    assert s.layer_quantile(0.0, 0) == pytest.approx(float(s.min[0].min()))
    assert s.layer_quantile(1.0, 0) == pytest.approx(float(s.max[0].max()))
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\]"):
        s.layer_quantile(99, 0)
