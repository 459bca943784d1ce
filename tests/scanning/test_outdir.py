"""A scan's output directory: resume repairs what it can (a damaged part, a part copied over another, a part
missing from a finished scan) and says so; a rerun of a finished scan computes nothing and says that; overwrite
computes again; processes scanning into one directory share its shards."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.storage import part_dir_name

from corpora import PROSE, code_snippets

KW = dict(batch_size=4, pooling=("mean", "max"), shard_tokens=300, progress=False)


@pytest.fixture(scope="module")
def corpus():
    return ml.Corpus(code_snippets(16) + PROSE[:8])


@pytest.fixture(scope="module")
def fresh(tiny, corpus):
    return ml.scan(tiny, corpus, **KW)


def _same(a: ml.Scan, b: ml.Scan) -> None:
    for p in a.poolings:
        np.testing.assert_array_equal(a.pooled(p), b.pooled(p))
    for k in ("min", "max", "hist_counts", "frac_positive"):
        np.testing.assert_array_equal(getattr(a.stats, k), getattr(b.stats, k))
    np.testing.assert_allclose(a.stats.mean, b.stats.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(a.top.docs, b.top.docs)
    np.testing.assert_array_equal(a.bottom.docs, b.bottom.docs)


def _part(out, i: int):
    (run,) = [p for p in out.iterdir() if p.name.startswith("run-")]
    return run / part_dir_name(i)


def _unfinish(out) -> None:
    """Make ``out`` an unfinished run (as if killed before the merge): the scan's manifest goes."""
    os.unlink(out / "manifest.json")


@pytest.fixture
def done(tiny, corpus, tmp_path):
    out = tmp_path / "out"
    s = ml.scan(tiny, corpus, out=out, **KW)
    assert s.meta["n_shards"] >= 4
    return out


@pytest.mark.parametrize("name", ["stats.safetensors", "pooled.mean.L1.safetensors"])
def test_a_part_with_a_flipped_byte_is_computed_again(tiny, corpus, fresh, done, name):
    (f,) = list(_part(done, 1).rglob(name))
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x40
    os.chmod(f, 0o644)
    f.write_bytes(bytes(data))
    _unfinish(done)
    with pytest.warns(UserWarning, match="computed again shard 1"):
        s = ml.scan(tiny, corpus, out=done, **KW)
    run = s.meta["run"]
    assert run["computed"] == 1 and run["resumed"] == run["shards"] - 1
    assert [r["shard"] for r in run["repaired"]] == [1] and "checksum" in run["repaired"][0]["why"]
    _same(s, fresh)
    _same(ml.Scan.load(done), fresh)


def test_a_part_copied_over_another_is_computed_again(tiny, corpus, fresh, done):
    shutil.rmtree(_part(done, 1))
    shutil.copytree(_part(done, 2), _part(done, 1))
    _unfinish(done)
    with pytest.warns(UserWarning, match="computed again shard 1"):
        s = ml.scan(tiny, corpus, out=done, **KW)
    assert [r["shard"] for r in s.meta["run"]["repaired"]] == [1] and s.meta["run"]["computed"] == 1
    _same(s, fresh)


def test_a_finished_scan_with_a_deleted_part_computes_that_shard(tiny, corpus, fresh, done):
    shutil.rmtree(_part(done, 2))
    with pytest.warns(UserWarning) as caught:
        s = ml.scan(tiny, corpus, out=done, **KW)
    said = [str(w.message) for w in caught]
    assert any("could not be loaded" in m and "part-00002" in m for m in said), said
    assert any(m.endswith("computed again shard 2 (missing)") for m in said), said
    run = s.meta["run"]
    assert run["computed"] == 1 and [r["shard"] for r in run["repaired"]] == [2]
    assert run["repaired"][0]["why"] == "missing"
    _same(s, fresh)
    _same(ml.Scan.load(done), fresh)


def _versions(out) -> list[str]:
    """The data versions of every part (a part written again gets a new one)."""
    return sorted(str(p.relative_to(out)) for p in out.glob("run-*/part-*/v-*"))


def test_a_rerun_of_a_finished_scan_computes_nothing_and_says_so(tiny, corpus, done):
    before = _versions(done)
    again = ml.scan(tiny, corpus, out=done, **KW)
    run = again.meta["run"]
    assert run["already_finished"] and run["computed"] == 0 and run["resumed"] == run["shards"]
    assert _versions(done) == before


def test_overwrite_computes_every_shard_again(tiny, corpus, done):
    before = _versions(done)
    redo = ml.scan(tiny, corpus, out=done, overwrite=True, **KW)
    assert redo.meta["run"]["computed"] == redo.meta["run"]["shards"] and redo.meta["run"]["resumed"] == 0
    after = _versions(done)
    assert len(after) == len(before) and not set(after) & set(before)  # every part written again
    assert ml.Scan.load(done).meta["run"]["computed"] == redo.meta["run"]["shards"]


def test_two_processes_into_one_directory_share_the_shards(corpus, tmp_path):
    """Two command-line scans started together into one new --out: every shard is computed once between them,
    and both end with the same scan."""
    corpus_file = tmp_path / "c.jsonl"
    corpus_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in corpus.texts * 3))
    out = tmp_path / "shared"
    argv = [sys.executable, "-m", "mri_lens.cli", "scan", "--model", "tiny", "--corpus", str(corpus_file),
            "--out", str(out), "--shard-tokens", "300", "--batch-size", "4", "--quiet"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    counts = [re.search(r"(\d+) of (\d+) shards computed now", o[0]) for o in outs]
    assert all(counts), outs
    n = int(counts[0][2])
    assert n >= 8 and sum(int(c[1]) for c in counts) == n, outs
    s = ml.Scan.load(out)
    assert s.n_docs == 3 * len(corpus) and s.meta["n_shards"] == n
