"""A saved scan's pooled values are its own: each per-layer file names the scan version it was written for, so a
file copied in from another scan (with or without its manifest entry) is refused; a scan replaced while it is in
use says so; every layout (arrays, per-layer files, a sharded run's parts) reads the same values."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from mri_lens import Scan, ScanFileError
from mri_lens.results.pooled import LayerFilePooled, SplitPooled

from saved import data_path, manifest, write_manifest

POOLED = "pooled.mean.L2.safetensors"


@pytest.fixture(scope="module")
def scan_b(tiny_scan):
    """Another scan of the same shapes (so its pooled files have the same sizes): other pooled values."""
    return dataclasses.replace(tiny_scan, pooled_={k: np.asarray(tiny_scan.pooled(k)) * 2 + 1
                                                   for k in tiny_scan.poolings})


@pytest.fixture()
def a_and_b(tiny_scan, scan_b, tmp_path):
    return tiny_scan.save(tmp_path / "a"), scan_b.save(tmp_path / "b")


def _copy_file(src_dir, dst_dir, name=POOLED):
    dst = data_path(dst_dir, name)
    os.chmod(dst, 0o644)
    shutil.copyfile(data_path(src_dir, name), dst)


def _copy_entry(src_dir, dst_dir, name=POOLED, *, reseal=True):
    m = manifest(dst_dir)
    m["files"][name] = manifest(src_dir)["files"][name]
    if reseal:
        write_manifest(dst_dir, m)  # a manifest sealed again after the edit: what the binding must catch
    else:
        with open(os.path.join(dst_dir, "manifest.json"), "w") as f:
            json.dump(m, f)


def test_the_pooled_files_of_another_scan_are_refused(a_and_b, tiny_scan):
    a, b = a_and_b
    assert manifest(a)["files"][POOLED]["size"] == manifest(b)["files"][POOLED]["size"]
    _copy_file(b, a)  # the file alone, of the same size: only the checksum (verify()) and the binding see it
    with pytest.raises(ScanFileError, match="belongs to another saved result"):
        Scan.load(a)
    _copy_entry(b, a, reseal=False)  # and its manifest entry, by a plain edit: the manifest's seal says so
    with pytest.raises(ScanFileError, match="was changed after mri_lens wrote it"):
        Scan.load(a)
    _copy_entry(b, a)  # the manifest sealed again (size and checksum agree with the file): the binding says so
    with pytest.raises(ScanFileError, match=f"{POOLED} belongs to another saved result"):
        Scan.load(a)


def test_a_file_copied_in_after_the_load_is_refused_when_read(a_and_b, tiny_scan):
    a, b = a_and_b
    s = Scan.load(a)
    _copy_file(b, a)
    with pytest.raises(ScanFileError, match="belongs to another saved result"):
        s.pooled("mean", layer=2)
    with pytest.raises(ScanFileError, match="belongs to another saved result"):
        s.verify()
    np.testing.assert_array_equal(s.pooled("mean", layer=1), tiny_scan.pooled("mean", layer=1))  # the others read


def test_a_file_of_an_earlier_save_of_the_same_scan_is_refused(tiny_scan, tmp_path):
    """A pooled file kept from an earlier save of the same directory: not this version's."""
    path = tiny_scan.save(tmp_path / "a")
    kept = tmp_path / "kept"
    shutil.copyfile(data_path(path, POOLED), kept)
    dataclasses.replace(tiny_scan, meta={**tiny_scan.meta, "again": True}).save(path)
    os.chmod(data_path(path, POOLED), 0o644)
    shutil.copyfile(kept, data_path(path, POOLED))
    with pytest.raises(ScanFileError, match="belongs to another saved result"):
        Scan.load(path)


def test_every_data_file_is_bound_to_its_version(tiny_scan, tmp_path):
    from safetensors import safe_open

    path = tiny_scan.save(tmp_path / "a")
    m = manifest(path)
    assert m["bound"] is True
    for name in [n for n in m["files"] if n.endswith(".safetensors")]:
        with safe_open(data_path(path, name), "np") as f:
            assert f.metadata() == {"mri_lens.version": m["version"], "mri_lens.file": name}


def test_verify_after_another_save_says_the_scan_was_replaced(tiny_scan, tmp_path):
    path = tiny_scan.save(tmp_path / "a")
    s = Scan.load(path)
    s.verify()
    dataclasses.replace(tiny_scan, meta={**tiny_scan.meta, "again": True}).save(path)  # another process's save
    with pytest.raises(ScanFileError, match="was replaced by a newer version since it was loaded") as e:
        s.verify()
    assert "missing" not in str(e.value)
    with pytest.raises(ScanFileError, match="was replaced by a newer version"):
        s.pooled("max", layer=3)  # a layer not read before
    Scan.load(path).verify()
    os.remove(data_path(path, POOLED))  # a file really gone: that is what it says then
    with pytest.raises(ScanFileError, match=f"incomplete: {POOLED} is missing"):
        Scan.load(path)


def test_results_saved_before_bindings_still_load(tiny_scan, tmp_path):
    """A scan whose manifest and files carry no seal and no binding (saved before they existed) loads as before."""
    import hashlib

    from safetensors.numpy import load_file, save_file

    path = tiny_scan.save(tmp_path / "a")
    m = manifest(path)
    for name, spec in m["files"].items():
        if name.endswith(".safetensors"):
            p = data_path(path, name)
            arrays = load_file(p)
            os.chmod(p, 0o644)
            save_file(arrays, p)  # without metadata
            data = open(p, "rb").read()
            spec.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    del m["bound"], m["mri_lens_sha256"]
    write_manifest(path, m)
    s = Scan.load(path)
    s.verify()
    np.testing.assert_array_equal(s.pooled("mean", layer=2), tiny_scan.pooled("mean", layer=2))


# ------------------------------------------------------------------------------------------ the layouts
def test_every_layout_reads_the_same_values(sharded, tmp_path):
    out, s = sharded
    loaded = Scan.load(out)
    assert isinstance(loaded.pooled_, SplitPooled) and len(loaded.pooled_.parts) >= 3
    whole = Scan.load(loaded.save(tmp_path / "whole"))  # the same scan saved whole: one file per layer
    assert isinstance(whole.pooled_, LayerFilePooled)
    for p in ("mean", "max"):
        for layer in loaded.layers:
            np.testing.assert_array_equal(whole.pooled(p, layer=layer), loaded.pooled(p, layer=layer))
    in_memory = dataclasses.replace(loaded, pooled_={p: loaded.pooled(p) for p in loaded.poolings})
    np.testing.assert_array_equal(in_memory.pooled("mean", layer=1), whole.pooled("mean", layer=1))
    m = manifest(out)["meta"]["pooled"]
    assert m["layout"] == "parts" and len(m["versions"]) == len(m["parts"])


@pytest.mark.parametrize("edit, match", [
    (lambda p: p.update(run="../elsewhere"), "no valid run directory"),
    (lambda p: p.update(parts=[]), "no valid list of parts"),
    (lambda p: p.update(parts=[0, 0]), "no valid list of parts"),
    (lambda p: p.update(parts=[-1]), "no valid list of parts"),
    (lambda p: p["parts"].pop(), "versions of its parts"),
    (lambda p: p.update(dtype="object"), "no valid dtype"),
    (lambda p: p.update(layout="columns"), "unknown layout"),
    (lambda p: p.update(parts=p["parts"][:-1], versions=p["versions"][:-1]), "do not cover its documents"),
])
def test_a_malformed_layout_says_what_is_wrong(sharded, tmp_path, edit, match):
    out = shutil.copytree(sharded[0], tmp_path / "out", symlinks=True)
    m = manifest(out)
    edit(m["meta"]["pooled"])
    write_manifest(out, m)
    with pytest.raises(ScanFileError, match=match) as e:
        Scan.load(out)
    assert "missing or malformed" not in str(e.value)
