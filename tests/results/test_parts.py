"""A sharded scan's parts: one name per shard index and no index too large to have one, read only through plain
directories (no symbolic link for the run or the part), each holding the shard its name says, in the version the
scan names."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from mri_lens import Scan, ScanFileError
from mri_lens.results import PartDocs, ScanPart
from mri_lens.storage.files import PART_RE, part_dir_name, part_index

from saved import manifest, write_manifest


@pytest.fixture()
def copy(sharded, tmp_path):
    """A copy of the sharded scan to change: ``(out, run directory, its scan)``."""
    out = str(shutil.copytree(sharded[0], tmp_path / "out", symlinks=True))
    run = os.path.join(out, manifest(out)["meta"]["pooled"]["run"])
    return out, run, sharded[1]


def test_part_names_have_no_upper_bound():
    for i in (0, 7, 99_999, 100_000, 123_456, 10 ** 12):
        name = part_dir_name(i)
        assert PART_RE.match(name) and part_index(name) == i
    assert part_dir_name(7) == "part-00007" and part_dir_name(123_456) == "part-123456"
    for bad in ("part-7", "part-0007", "part-0123456", "part-00007x", "part--1", "part-", "run-00007"):
        assert not PART_RE.match(bad) and part_index(bad) is None, bad  # one name per index, nothing else
    for bad in (-1, 1.0, True, "3"):
        with pytest.raises(ValueError):
            part_dir_name(bad)


def test_a_scan_with_part_ids_above_99999_loads(copy):
    """Shard ids above 99,999 (a scan of some 7 million documents at 256 MiB shards): saved and loaded."""
    out, run, s = copy
    m = manifest(out)
    ids = m["meta"]["pooled"]["parts"]
    big = [100_000 + 23_456 * i for i in ids]
    versions = []
    for i, j in zip(ids, big):
        part = ScanPart.load(os.path.join(run, part_dir_name(i)))
        part.index = j
        new = os.path.join(run, part_dir_name(j))
        part.pooled_ = {p: np.stack([part.pooled_layer(p, li) for li in range(len(part.layers))], 1)
                        for p in part.poolings}
        part.partial_ = {p: np.stack([part.pooled_layer(p, li, "partial") for li in range(len(part.layers))], 1)
                         for p in part.poolings}
        part.save(new, plan_hash=s.meta["plan_hash"])
        versions.append(manifest(new)["version"])
        shutil.rmtree(os.path.join(run, part_dir_name(i)))
    m["meta"]["pooled"].update(parts=big, versions=versions)
    write_manifest(out, m)
    loaded = Scan.load(out)
    assert sorted(n for n in os.listdir(run) if n.startswith("part-")) == [part_dir_name(j) for j in big]
    for p in ("mean", "max"):
        np.testing.assert_array_equal(loaded.pooled(p), s.pooled(p))
    loaded.verify()


@pytest.mark.parametrize("which", ["run", "part"])
def test_symlinked_run_and_part_directories_are_refused(copy, tmp_path, which):
    out, run, _ = copy
    target = run if which == "run" else os.path.join(run, part_dir_name(1))
    elsewhere = tmp_path / "elsewhere"
    os.rename(target, elsewhere)
    os.symlink(elsewhere, target)
    with pytest.raises(ScanFileError, match="symbolic link"):
        Scan.load(out)
    with pytest.raises(ScanFileError, match="symbolic link"):
        PartDocs(os.path.join(run, part_dir_name(1)))
    os.unlink(target)
    os.rename(elsewhere, target)
    Scan.load(out)


def test_a_part_copied_over_another_is_refused(copy):
    """The finished-part check of a resumed run (PartDocs) sees a part that holds another shard than its name."""
    out, run, s = copy
    one = os.path.join(run, part_dir_name(1))
    shutil.rmtree(one)
    shutil.copytree(os.path.join(run, part_dir_name(0)), one)
    with pytest.raises(ScanFileError, match="holds another shard than its name says"):
        PartDocs(one, plan_hash=s.meta["plan_hash"])
    with pytest.raises(ScanFileError, match="holds another shard than its name says"):
        Scan.load(out)


def test_a_part_written_again_after_the_scan_is_refused(copy):
    """A part saved again (another version of the same shard) no longer is the part the scan was merged from."""
    out, run, s = copy
    one = os.path.join(run, part_dir_name(1))
    part = ScanPart.load(one)
    part.pooled_ = {p: np.stack([part.pooled_layer(p, li) * 0 for li in range(len(part.layers))], 1)
                    for p in part.poolings}
    part.partial_ = {p: np.stack([part.pooled_layer(p, li, "partial") for li in range(len(part.layers))], 1)
                     for p in part.poolings}
    part.save(one, plan_hash=s.meta["plan_hash"], overwrite=True)
    PartDocs(one, plan_hash=s.meta["plan_hash"])  # a sound part in itself
    with pytest.raises(ScanFileError, match="was written again after the scan"):
        Scan.load(out)


def test_a_part_round_trips(copy):
    _, run, s = copy
    path = os.path.join(run, part_dir_name(0))
    part = ScanPart.load(path, plan_hash=s.meta["plan_hash"])
    assert part.index == 0 and part.layers == s.layers and part.poolings == ["mean", "max"]
    with pytest.raises(ScanFileError, match="another scan plan"):
        ScanPart.load(path, plan_hash="0" * 64)
    docs = PartDocs(path)
    assert docs.index == 0 and docs.version == manifest(path)["version"]
    np.testing.assert_array_equal(docs.complete_docs, part.complete_docs)
    np.testing.assert_array_equal(docs.pooled_layer("mean", 1), s.pooled("mean", layer=1)[part.complete_docs])
