"""Saved results are safe: nothing foreign is replaced or deleted, nothing outside a result is read, a kill at any
instant leaves a loadable version, concurrent writers and readers never see a broken state, and malformed files
give project errors only."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import signal
import stat
import sys
import threading
import time

import numpy as np
import pytest

import mri_lens as ml
from mri_lens import MriLensError, Scan, ScanFileError
from mri_lens.storage import write as _io
from mri_lens.render.report import write_scan_report

from mri_lens.storage.integrity import SEAL_KEY, seal

from saved import data_path, manifest, tree, write_manifest


def _user_dir(root):
    """A directory of someone's own files, including a sub-directory."""
    d = root / "userdir"
    (d / "sub").mkdir(parents=True)
    (d / "thesis.txt").write_text("thesis\n")
    (d / "sub" / "notes.md").write_bytes(b"\x00binary\xffnotes")
    return d


def _variant(scan: Scan, marker: str) -> Scan:
    return dataclasses.replace(scan, meta={**scan.meta, "marker": marker})


@pytest.fixture(scope="module")
def small_scan(tiny_scan):
    """The tiny LM's scan with two poolings (fast to save many times)."""
    return dataclasses.replace(tiny_scan, pooled_={k: tiny_scan.pooled_[k] for k in ("mean", "max")})


@pytest.fixture(scope="module")
def maps(tiny_scan):
    return ml.mri.RegionMaps(grid=3, n_epochs=30, n_jobs=1, seed=0).fit(tiny_scan, layers=[0, 1])


@pytest.fixture(scope="module")
def neuron_graph(tiny, tiny_scan):
    n = int(np.argmax(tiny_scan.stats.max[0]))
    return ml.n2g.NeuronGraph.fit(tiny, layer=0, neuron=n, examples=tiny_scan.top_examples(0, n, k=6), seed=0)


# --------------------------------------------------------------------------------------- refusing to replace
def test_a_user_directory_survives_every_save(small_scan, maps, neuron_graph, tmp_path):
    d = _user_dir(tmp_path)
    before = tree(d)
    g = ml.mri.coactivation_graph(maps, min_weight=1)
    savers = {
        "scan": lambda o: small_scan.save(d, overwrite=o),
        "maps": lambda o: maps.save(d, overwrite=o),
        "site dir": lambda o: _io.claim_dir(d, "mri_lens.site", overwrite=o),
        "n2g dir": lambda o: _io.claim_dir(d, "mri_lens.n2g", overwrite=o),
    }
    for name, save in savers.items():
        with pytest.raises(ScanFileError, match="is not empty and is not a") as e:
            save(False)
        assert "overwrite=True" in str(e.value), name
        assert tree(d) == before, name
    # a file of the user's at a single-file result's path
    for name, save in {
        "graph": lambda p, o: ml.mri.write_graph(g, p, format="json", overwrite=o),
        "graphml": lambda p, o: ml.mri.write_graph(g, p, format="graphml", overwrite=o),
        "n2g graph": lambda p, o: neuron_graph.save(p, overwrite=o),
        "index": lambda p, o: ml.n2g.NeuronIndex([neuron_graph]).save(p, overwrite=o),
        "report": lambda p, o: write_scan_report(small_scan, p, overwrite=o),
    }.items():
        with pytest.raises(ScanFileError, match="refusing to replace it"):
            save(d / "thesis.txt", False)
        with pytest.raises(ScanFileError, match="is a directory"):
            save(d / "sub", False)
        assert tree(d) == before, name
    # a file where a directory result would go
    with pytest.raises(ScanFileError, match="exists and is not a directory"):
        small_scan.save(d / "thesis.txt", overwrite=True)
    assert tree(d) == before


def test_a_non_empty_working_directory_survives(small_scan, tmp_path, monkeypatch):
    d = _user_dir(tmp_path)
    before = tree(d)
    monkeypatch.chdir(d)
    with pytest.raises(ScanFileError, match="not empty"):
        small_scan.save(".")
    with pytest.raises(ScanFileError, match="not empty"):
        _io.check_save_target(".", "mri_lens.scan")
    assert tree(d) == before


def test_overwrite_writes_beside_and_removes_only_our_files(small_scan, maps, tmp_path):
    d = _user_dir(tmp_path)
    before = tree(d)
    small_scan.save(d, overwrite=True)
    assert Scan.load(d).n_docs == small_scan.n_docs
    after = tree(d)
    assert {k: v for k, v in after.items() if k in before} == before
    small_scan.save(d)  # now a saved scan: replaced without asking, user files kept
    maps.save(d, overwrite=True)  # another kind, on request: the scan's data goes, user files stay
    assert ml.mri.RegionMaps.load(d).layers == [0, 1]
    with pytest.raises(ScanFileError, match="not a saved mri_lens.scan"):
        Scan.load(d)
    after = tree(d)
    assert {k: v for k, v in after.items() if k in before} == before
    assert [n for n in os.listdir(d) if n.startswith("v-")] == [manifest(d)["version"]]
    # without overwrite, a result of another kind is refused
    with pytest.raises(ScanFileError, match="holds a saved region maps, not a saved scan"):
        small_scan.save(d)


def test_a_foreign_manifest_is_never_replaced(small_scan, tmp_path):
    d = tmp_path / "theirs"
    d.mkdir()
    (d / "manifest.json").write_text('{"name": "my package", "version": "1.0"}')
    before = tree(d)
    for overwrite in (False, True):
        with pytest.raises(ScanFileError, match="not a saved mri_lens result"):
            small_scan.save(d, overwrite=overwrite)
    assert tree(d) == before


def test_an_empty_directory_and_a_missing_path_are_free(small_scan, tmp_path):
    (tmp_path / "empty").mkdir()
    small_scan.save(tmp_path / "empty")
    small_scan.save(tmp_path / "a" / "b" / "c")
    assert Scan.load(tmp_path / "a" / "b" / "c").n_docs == small_scan.n_docs


def test_unwritable_target_fails_before_any_work(tmp_path):
    with pytest.raises(ScanFileError, match="cannot write"):
        _io.check_save_target("/proc/forbidden/run", "mri_lens.scan")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ScanFileError, match="not a directory"):
        _io.check_save_target(tmp_path / "f" / "run", "mri_lens.scan")


def test_the_early_check_creates_nothing_a_writer_uses(tmp_path):
    """check_save_target (run before any model loads) leaves a missing target missing (a writer creates it, then
    locks) and an existing one as it was."""
    p = _io.check_save_target(tmp_path / "a" / "b" / "c", "mri_lens.scan")
    assert p == str(tmp_path / "a" / "b" / "c") and os.listdir(tmp_path) == []
    (tmp_path / "d").mkdir()
    _io.check_save_target(tmp_path / "d", "mri_lens.scan")
    _io.check_save_target(tmp_path / "d" / "g.json", "mri_lens.coactivation_graph")
    assert os.listdir(tmp_path / "d") == []


def test_same_permissions_for_every_file(small_scan, tmp_path):
    path = small_scan.save(tmp_path / "run")
    modes = {name: stat.S_IMODE(os.stat(data_path(path, name)).st_mode)
             for name in ("arrays.safetensors", "tokenizer.json")}
    modes["manifest.json"] = stat.S_IMODE(os.stat(os.path.join(path, "manifest.json")).st_mode)
    assert len(set(modes.values())) == 1, modes
    umask = os.umask(0)
    os.umask(umask)
    assert set(modes.values()) == {0o666 & ~umask}


def test_leftovers_of_killed_saves_are_cleaned(small_scan, tmp_path):
    path = small_scan.save(tmp_path / "run")
    os.mkdir(os.path.join(path, ".tmp-v-0000000000000001-deadbeef"))
    os.mkdir(os.path.join(path, "v-0000000000000002-deadbeef"))
    with open(os.path.join(path, "v-0000000000000002-deadbeef", "arrays.safetensors"), "w") as f:
        f.write("half")
    open(os.path.join(path, ".tmp-manifest.json-abc"), "w").close()
    (tmp_path / "run" / "mine.txt").write_text("keep")
    small_scan.save(path)
    names = sorted(os.listdir(path))
    assert names == sorted([".lock", "manifest.json", "mine.txt", manifest(path)["version"]])
    # a single-file result: a stale temporary sibling of a killed write goes at the next write of that name
    g = tmp_path / "g.json"
    stale = tmp_path / ".tmp-g.json-dead"
    stale.write_text("{")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    graph = ml.mri.coactivation_graph(ml.mri.RegionMaps(grid=2, n_epochs=10, n_jobs=1).fit(small_scan, layers=[0]))
    ml.mri.write_graph(graph, g)
    ml.mri.write_graph(graph, g)
    assert sorted(os.listdir(tmp_path)) == ["g.json", "run"]


def _write_legacy_scan(scan: Scan, path, schema: int) -> None:
    """A scan as the first formats saved it: every array, pooled values included, in one arrays.safetensors;
    schema 1 beside the manifest, schema 2 in a version directory."""
    import hashlib

    from safetensors.numpy import save as st_save

    arrays = {f"pooled.{p}": np.asarray(scan.pooled(p)) for p in scan.poolings}
    arrays.update({k: v for k, v in scan._eager_arrays().items() if k != "stats.n_positive"})
    blobs = {"arrays.safetensors": st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()}),
             "tokenizer.json": scan.tokenizer_json.encode()}
    meta = {"scan": scan.meta, "layers": scan.layers, "label_names": scan.label_names,
            "stats_count": int(scan.stats.count), "poolings": scan.poolings}
    specs = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}
    os.makedirs(path)
    base = path
    m = {"format": "mri_lens.scan", "schema_version": schema, "arrays": specs, "meta": meta}
    if schema == 1:
        m["sha256"] = {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()}
    else:
        m["version"] = "v-0000000000000001-00000000"
        base = os.path.join(path, m["version"])
        os.makedirs(base)
        m["files"] = {n: {"size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in blobs.items()}
    for n, b in blobs.items():
        with open(os.path.join(base, n), "wb") as f:
            f.write(b)
    write_manifest(path, m)


@pytest.mark.parametrize("schema", [1, 2])
def test_earlier_schemas_load_and_are_replaced(small_scan, tmp_path, schema):
    """Results saved by the earlier formats (files beside the manifest; one version directory) load, and a new
    save replaces them."""
    path = str(tmp_path / "run")
    _write_legacy_scan(small_scan, path, schema)
    old = Scan.load(path)
    assert old.n_docs == small_scan.n_docs
    np.testing.assert_array_equal(old.pooled("mean", layer=1), small_scan.pooled("mean", layer=1))
    _variant(small_scan, "new").save(path)
    assert Scan.load(path).meta["marker"] == "new"
    assert not os.path.exists(os.path.join(path, "arrays.safetensors"))
    assert not os.path.exists(os.path.join(path, "v-0000000000000001-00000000"))


# --------------------------------------------------------------------------------------- confined loads
def _load_quickly(path, loader=Scan.load):
    """Load in a thread: a FIFO or device would block a plain read forever. Returns the exception raised."""
    box = {}

    def run():
        try:
            loader(path)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "the load hung"
    return box.get("error")


@pytest.fixture()
def saved(small_scan, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET contents")
    return small_scan.save(tmp_path / "run"), str(secret)


def _tamper_files(path, edit):
    m = manifest(path)
    edit(m["files"], m)
    write_manifest(path, m)


@pytest.mark.parametrize("case", ["dotdot", "absolute", "dev_zero", "subdir", "hidden", "unknown", "not_str"])
def test_manifest_file_names_are_confined(saved, case):
    path, secret = saved
    bad = {"dotdot": "../../secret.txt", "absolute": secret, "dev_zero": "/dev/zero", "subdir": "sub/x.json",
           "hidden": ".lock", "unknown": "extra.json"}.get(case)

    def edit(files, m):
        spec = {"size": 18, "sha256": "0" * 64}
        if case == "not_str":
            m["files"] = [["arrays.safetensors", spec]]
        else:
            files[bad] = spec

    _tamper_files(path, edit)
    err = _load_quickly(path)
    assert isinstance(err, ScanFileError), err
    assert "TOPSECRET" not in str(err) and "secret" not in str(err) and "/dev/zero" not in str(err)
    assert str(path) in str(err)


@pytest.mark.parametrize("name", ["arrays.safetensors", "tokenizer.json"])
@pytest.mark.parametrize("kind", ["symlink", "fifo", "dev_zero_link", "directory"])
def test_data_files_are_regular_files(saved, name, kind):
    path, secret = saved
    target = data_path(path, name)
    os.unlink(target)
    if kind == "symlink":
        os.symlink(secret, target)
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "dev_zero_link":
        os.symlink("/dev/zero", target)
    else:
        os.mkdir(target)
    err = _load_quickly(path)
    assert isinstance(err, ScanFileError), err
    assert "TOPSECRET" not in str(err)


def test_a_symlinked_manifest_or_version_is_refused(saved, tmp_path):
    path, _ = saved
    m = manifest(path)
    elsewhere = tmp_path / "elsewhere"
    os.rename(os.path.join(path, m["version"]), elsewhere)
    os.symlink(elsewhere, os.path.join(path, m["version"]))
    assert isinstance(_load_quickly(path), ScanFileError)
    os.unlink(os.path.join(path, m["version"]))
    os.rename(elsewhere, os.path.join(path, m["version"]))
    os.replace(os.path.join(path, "manifest.json"), tmp_path / "m.json")
    os.symlink(tmp_path / "m.json", os.path.join(path, "manifest.json"))
    assert isinstance(_load_quickly(path), ScanFileError)


@pytest.mark.parametrize("edit, match", [
    (lambda f, m: f.pop("arrays.safetensors"), "has no checksum"),
    (lambda f, m: f.pop("tokenizer.json"), "tokenizer"),
    (lambda f, m: m.update(sha256=["arrays.safetensors"]) or m.pop("files") and None, "lists no files"),
    (lambda f, m: f["arrays.safetensors"].update(size=10), "size"),
    (lambda f, m: f["arrays.safetensors"].update(size=-1), "size and SHA-256"),
    (lambda f, m: f["arrays.safetensors"].update(sha256="a" * 64), "checksum mismatch"),
    (lambda f, m: f["arrays.safetensors"].pop("sha256"), "size and SHA-256"),
    (lambda f, m: m.update(version="../run"), "data version"),
    (lambda f, m: m.update(version="v-0000000000000009-00000000"), "incomplete"),
])
def test_checksums_and_sizes_cannot_be_switched_off(saved, edit, match):
    path, _ = saved
    _tamper_files(path, edit)
    err = _load_quickly(path)
    assert isinstance(err, ScanFileError) and match in str(err), err


@pytest.mark.parametrize("value, match", [
    ("abc", "schema version 'str'"), (None, "schema version 'NoneType'"), (-7, "schema version -7"),
    (True, "schema version 'bool'"), (0, "schema version 0"), (99, "upgrade mri_lens"),
])
def test_schema_versions(saved, value, match):
    path, _ = saved
    m = manifest(path)
    m["schema_version"] = value
    write_manifest(path, m)
    with pytest.raises(ScanFileError, match=match):
        Scan.load(path)


def test_malformed_manifest_entries(saved):
    path, _ = saved
    for edit in (lambda m: m["arrays"]["stats.mean"].pop("shape"),
                 lambda m: m["arrays"]["stats.mean"].update(dtype="object"),
                 lambda m: m["arrays"]["stats.mean"].update(shape=[-1, 3]),
                 lambda m: m.update(meta=[1]),
                 lambda m: m["meta"].update(label_names=["code"]),
                 lambda m: m["meta"].update(layers="0123"),
                 lambda m: m["meta"].update(poolings=[]),
                 lambda m: m["meta"].update(stats_count=True)):
        m = manifest(path)
        good = copy.deepcopy(m)
        edit(m)
        write_manifest(path, m)
        with pytest.raises(ScanFileError):
            Scan.load(path)
        write_manifest(path, good)
    assert Scan.load(path).n_docs > 0


def test_deep_or_huge_json_is_a_project_error(saved, tmp_path):
    path, _ = saved
    with open(os.path.join(path, "manifest.json"), "w") as f:
        f.write("[" * 200000)
    with pytest.raises(ScanFileError, match="nested too deeply|not valid JSON"):
        Scan.load(path)
    with open(os.path.join(path, "manifest.json"), "w") as f:
        f.write("[" * 100 + "]" * 100)
    with pytest.raises(ScanFileError, match="nested deeper"):
        Scan.load(path)
    g = tmp_path / "g.json"
    g.write_text("[" * 200000)
    with pytest.raises(ScanFileError):
        ml.mri.load_graph_json(g)
    with pytest.raises(ScanFileError):
        ml.n2g.NeuronGraph.load(g)
    with pytest.raises(ScanFileError):
        ml.n2g.NeuronIndex.load(g)
    g.write_bytes(b'{"format": "mri_lens.n2g.graph", "x": NaN}')
    with pytest.raises(ScanFileError, match="NaN"):
        ml.n2g.NeuronGraph.load(g)
    g.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ScanFileError, match="UTF-8"):
        ml.mri.load_graph_json(g)


def test_a_tampered_but_rehashed_tokenizer_is_refused(saved):
    path, _ = saved
    tok = data_path(path, "tokenizer.json")
    data = b'{"version": "1.0", "model": {"type": "nonsense"}}'
    os.chmod(tok, 0o644)
    with open(tok, "wb") as f:
        f.write(data)
    m = manifest(path)
    import hashlib

    m["files"]["tokenizer.json"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    write_manifest(path, m)
    with pytest.raises(ScanFileError, match="not a valid tokenizer"):
        Scan.load(path)


def test_single_file_loads_refuse_fifos_and_devices(tmp_path):
    fifo = tmp_path / "g.json"
    os.mkfifo(fifo)
    for loader in (ml.mri.load_graph_json, ml.n2g.NeuronGraph.load, ml.n2g.NeuronIndex.load):
        assert isinstance(_load_quickly(fifo, loader), ScanFileError)
        assert isinstance(_load_quickly("/dev/zero", loader), ScanFileError)


def test_graph_files_missing_parts(tmp_path):
    base = {"directed": True, "multigraph": False, "graph": {"kind": "mri_lens.coactivation_graph"},
            "nodes": [{"id": [0, 1]}], "edges": []}
    for edit in (lambda d: d["nodes"][0].pop("id"), lambda d: d.update(nodes={"a": 1}),
                 lambda d: d["edges"].append({"source": [0, 1]}), lambda d: d["graph"].update(schema_version="x"),
                 lambda d: d["nodes"][0].update(id=[[0], 1]), lambda d: d["graph"].update(schema_version=True)):
        d = copy.deepcopy(base)
        edit(d)
        (tmp_path / "g.json").write_text(json.dumps(d))
        with pytest.raises(ScanFileError):
            ml.mri.load_graph_json(tmp_path / "g.json")


# --------------------------------------------------------------------------------------- fuzzing
_VALUES = [None, True, False, -7, 0, 1, 2 ** 70, 1.5, -0.5, "", "abc", "../../etc/passwd", "/dev/zero",
           "v-0000000000000001-00000000", [], [1, 2], {}, {"a": 1}, [[[]]], "arrays.safetensors", [-1, 3]]


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:8]):
            yield from _paths(v, prefix + (i,))


def _mutate(obj, rng: random.Random):
    obj = copy.deepcopy(obj)
    paths = [p for p in _paths(obj) if p]
    p = rng.choice(paths)
    parent = obj
    for k in p[:-1]:
        parent = parent[k]
    key = p[-1]
    op = rng.randrange(4)
    if op == 0:
        del parent[key]
    elif op == 1:
        parent[key] = copy.deepcopy(rng.choice(_VALUES))
    elif op == 2:
        parent[key] = [parent[key]]
    else:
        parent[key] = {"x": parent[key]} if not isinstance(parent[key], dict) else list(parent[key].values())
    return obj, (p, op)


def _canonical(obj) -> str:
    """``obj`` without its seal, in one spelling (keys sorted): what a JSON file says."""
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k != SEAL_KEY}
    return json.dumps(obj, sort_keys=True)


def _says_the_same(text: str, original) -> bool:
    try:
        return _canonical(json.loads(text)) == _canonical(original)
    except ValueError:
        return False


def _fuzz(rng, original: dict, write, load, n: int) -> dict[str, int]:
    """``n`` mutations of a saved JSON file. Half of them are sealed again (a consistent file that says something
    else: the loader's own checks must answer with a project error or load it); the others are corruptions (any
    that changes what the file says must raise a project error; only one that says the same may load).
    Returns how many mutations loaded and how many were refused."""
    reseal_rng = random.Random(1)  # a stream of its own: the mutations are the ones drawn without it
    seen = {"loaded": 0, "refused": 0}
    for _ in range(n):
        mutated, how = _mutate(original, rng)
        resealed = isinstance(mutated, dict) and reseal_rng.random() < 0.5
        text = json.dumps(seal(mutated) if resealed else mutated)
        damaged = rng.random() < 0.1
        if damaged:  # sometimes a damaged text, not a damaged structure
            cut = rng.randrange(len(text))
            intact = text
            text = text[:cut] if rng.random() < 0.5 else text[:cut] + rng.choice("]}[{,\":x") + text[cut + 1:]
            damaged = text != intact  # a character replaced by itself damages nothing
        write(text)
        try:
            load()
        except MriLensError:
            seen["refused"] += 1
            continue
        except Exception as e:  # noqa: BLE001 - the assertion below reports it
            pytest.fail(f"mutation {how} of a saved file gave {type(e).__name__}: {e}")
        seen["loaded"] += 1
        if not (resealed and not damaged) and not _says_the_same(text, original):
            pytest.fail(f"mutation {how} of a saved file (a corruption: not sealed again) loaded without an error")
    return seen


def test_fuzzed_files_give_only_project_errors(small_scan, maps, neuron_graph, tmp_path):
    """Random mutations of real manifests and graph, N2G and index JSON: a corrupted file never loads unless it
    says the same as the original; a consistent but malformed one gives a project error or loads."""
    rng = random.Random(0)
    scan_dir = small_scan.save(tmp_path / "scan")
    maps_dir = maps.save(tmp_path / "maps")
    graph_path = ml.mri.write_graph(ml.mri.coactivation_graph(maps, min_weight=1, enrichment=True), tmp_path / "g.json")
    n2g_path = neuron_graph.save(tmp_path / "n.json")
    index_path = ml.n2g.NeuronIndex([neuron_graph]).save(tmp_path / "i.json")

    def writer(path):
        def write(text):
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return write

    targets = [
        (os.path.join(scan_dir, "manifest.json"), lambda: Scan.load(scan_dir), 120),
        (os.path.join(maps_dir, "manifest.json"), lambda: ml.mri.RegionMaps.load(maps_dir), 60),
        (graph_path, lambda: ml.mri.load_graph_json(graph_path), 60),
        (n2g_path, lambda: ml.n2g.NeuronGraph.load(n2g_path), 80),
        (index_path, lambda: ml.n2g.NeuronIndex.load(index_path), 30),
    ]
    for path, load, n in targets:
        with open(path, encoding="utf-8") as f:
            original = json.load(f)
        assert SEAL_KEY in original, path  # every one of these files is sealed when written
        seen = _fuzz(rng, original, writer(path), load, n)
        assert seen["refused"] > n // 3, (path, seen)  # the mutations do reach the loader's checks


def test_a_hand_edited_json_result_is_refused(maps, neuron_graph, small_scan, tmp_path):
    """One number changed in a graph file, an N2G graph or a manifest: refused (the file's seal), not loaded."""
    g = ml.mri.write_graph(ml.mri.coactivation_graph(maps, min_weight=1), tmp_path / "g.json")
    d = json.loads(open(g).read())
    d["edges"][0]["weight"] = d["edges"][0]["weight"] + 1
    (tmp_path / "g.json").write_text(json.dumps(d))
    with pytest.raises(ScanFileError, match="was changed after mri_lens wrote it"):
        ml.mri.load_graph_json(g)
    n = neuron_graph.save(tmp_path / "n.json")
    d = json.loads(open(n).read())
    d["neuron"] += 1
    (tmp_path / "n.json").write_text(json.dumps(d))
    with pytest.raises(ScanFileError, match="was changed after mri_lens wrote it"):
        ml.n2g.NeuronGraph.load(n)
    path = small_scan.save(tmp_path / "scan")
    m = manifest(path)
    m["meta"]["scan"]["model_id"] = "another model"
    with open(os.path.join(path, "manifest.json"), "w") as f:
        json.dump(m, f)
    with pytest.raises(ScanFileError, match="was changed after mri_lens wrote it"):
        Scan.load(path)


# --------------------------------------------------------------------------------------- kills and races
_FS_EVENTS = {"os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.mkdir", "os.chmod"}


def _is_step(event, args) -> bool:
    if event in _FS_EVENTS:
        return True
    if event == "open" and len(args) >= 3 and isinstance(args[2], int):
        return bool(args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    return False


def _run_child(fn) -> int:
    """Run ``fn`` in a forked child; returns its wait status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            fn()
            code = 0
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def _count_steps(save) -> int:
    r, w = os.pipe()

    def child():
        n = [0]

        def hook(event, args):
            if _is_step(event, args):
                n[0] += 1
        sys.addaudithook(hook)
        save()
        os.write(w, str(n[0]).encode())

    assert os.WEXITSTATUS(_run_child(child)) == 0
    os.close(w)
    count = int(os.read(r, 64))
    os.close(r)
    return count


def _kill_at(save, k: int) -> int:
    def child():
        n = [0]

        def hook(event, args):
            if _is_step(event, args):
                if n[0] == k:
                    os.kill(os.getpid(), signal.SIGKILL)
                n[0] += 1
        sys.addaudithook(hook)
        save()
        os.kill(os.getpid(), signal.SIGKILL)  # after the last step
    return _run_child(child)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("kind", ["scan", "maps", "graph"])
def test_a_kill_at_every_step_leaves_old_or_new(kind, small_scan, maps, tmp_path):
    """SIGKILL before each filesystem step of a save over a good result (and after the last one)."""
    import safetensors.numpy  # noqa: F401 - imported before forking, so the child's steps are the save's own

    if kind == "scan":
        path = tmp_path / "run"
        save_old = lambda: _variant(small_scan, "old").save(path)  # noqa: E731
        save = lambda: _variant(small_scan, "new").save(path)  # noqa: E731
        which = lambda: Scan.load(path).meta["marker"]  # noqa: E731
    elif kind == "maps":
        path = tmp_path / "maps"
        save_old = lambda: maps.save(path)  # noqa: E731
        new = copy.copy(maps)
        new.scan_meta_ = {**maps.scan_meta_, "marker": "new"}
        save = lambda: new.save(path)  # noqa: E731
        which = lambda: ml.mri.RegionMaps.load(path).scan_meta_.get("marker", "old")  # noqa: E731
    else:
        path = tmp_path / "g.json"
        g = ml.mri.coactivation_graph(maps, min_weight=1)
        save_old = lambda: ml.mri.write_graph(g, path)  # noqa: E731
        g2 = g.copy()
        g2.graph["marker"] = "new"
        save = lambda: ml.mri.write_graph(g2, path)  # noqa: E731
        which = lambda: ml.mri.load_graph_json(path).graph.get("marker", "old")  # noqa: E731
    save_old()
    n = _count_steps(save)
    assert n >= (5 if kind != "graph" else 2)
    _variant_of = []
    for k in range(n + 1):
        save_old()  # a good old result before every kill
        status = _kill_at(save, k)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (k, status)
        _variant_of.append(which())  # raises if nothing loadable is there
    assert set(_variant_of) <= {"old", "new"}
    assert _variant_of[0] == "old" and _variant_of[-1] == "new"
    if kind != "graph":
        save()  # the next save cleans whatever the kills left
        names = os.listdir(path)
        assert not [x for x in names if x.startswith(".tmp-")]
        assert [x for x in names if x.startswith("v-")] == [manifest(path)["version"]]
    else:
        # a killed write's temporary sibling is removed by a later write of that name once it is not recent
        # (a live writer's file is locked and recent)
        stale = [x for x in os.listdir(tmp_path) if x.startswith(".tmp-")]
        assert stale
        for x in stale:
            os.utime(tmp_path / x, (time.time() - 3600, time.time() - 3600))
        save()
        assert sorted(os.listdir(tmp_path)) == ["g.json"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_writers_and_a_reader(small_scan, tmp_path):
    path = tmp_path / "run"
    _variant(small_scan, "start").save(path)
    stop_at = time.time() + 3.0

    def writer(tag):
        def run():
            i = 0
            while time.time() < stop_at:
                _variant(small_scan, f"{tag}").save(path)
                i += 1
            assert i > 0
        return run

    pids = []
    for tag in ("a", "b"):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                writer(tag)()
                code = 0
            except BaseException:  # noqa: BLE001
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        pids.append(pid)
    seen, loads = set(), 0
    while time.time() < stop_at:
        s = Scan.load(path)  # must never fail
        seen.add(s.meta["marker"])
        loads += 1
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert loads > 10 and seen <= {"start", "a", "b"} and seen & {"a", "b"}
    assert Scan.load(path).meta["marker"] in ("a", "b")
    names = os.listdir(path)
    assert not [x for x in names if x.startswith(".tmp-")]
    assert len([x for x in names if x.startswith("v-")]) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_concurrent_saves_into_new_paths_take_turns(tiny, tmp_path):
    """200 saves at once (4 processes x 10 threads x 5 saves) into 40 new paths under 8 new parent directories,
    5 saves into each path from several processes: every save succeeds (no foreign exception, no refusal), and
    every path holds one of the scans saved there, loadable."""
    import safetensors.numpy  # noqa: F401 - imported before forking

    small_scan = ml.scan(tiny, ["def f(x): return x", "the cat sat", "import os", "a b c d"], layers=[0],
                         pooling=("mean",), top_k=2, progress=False)  # quick to save 200 times

    root = tmp_path / "new"
    n_procs, n_threads, n_saves, n_paths = 4, 10, 5, 40
    target = lambda i: root / f"p{i % 8}" / "q" / f"s{i % n_paths}"  # noqa: E731
    scans = {i: _variant(small_scan, str(i)) for i in range(n_procs * n_threads * n_saves)}
    report = tmp_path / "report"
    report.mkdir()
    start = time.time() + 1.0  # every process starts saving at once

    def child(c):
        errors = []
        barrier = threading.Barrier(n_threads)

        def worker(t):
            barrier.wait()
            time.sleep(max(0.0, start - time.time()))
            for j in range(n_saves):
                i = (c * n_threads + t) * n_saves + j
                try:
                    scans[i].save(target(i))
                except BaseException as e:  # noqa: BLE001 - every failure is reported
                    errors.append(f"{i}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        (report / str(c)).write_text("\n".join(errors))

    statuses = []
    pids = []
    for c in range(n_procs):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                child(c)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        statuses.append(os.waitpid(pid, 0)[1])
    assert all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses), statuses
    errors = [line for c in range(n_procs) for line in (report / str(c)).read_text().splitlines()]
    assert errors == []
    for k in range(n_paths):
        saved_there = {str(i) for i in scans if i % n_paths == k}
        s = Scan.load(target(k))
        s.verify()
        assert s.meta["marker"] in saved_there
        names = os.listdir(target(k))
        assert not [x for x in names if x.startswith(".tmp-")]
        assert len([x for x in names if x.startswith("v-")]) == 1
    assert not [x for x in os.listdir(root) if x.startswith(".tmp-")]


def _can_mount_tmpfs() -> bool:
    import shutil
    import subprocess

    if not shutil.which("unshare") or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                            "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs a user namespace to mount a small tmpfs")
def test_a_full_disk_is_a_clear_error_naming_the_path(small_scan, tmp_path):
    """A save onto a full disk (a small tmpfs, mounted in a user namespace): a ScanFileError that names the
    path and says the disk is full; the result there before is untouched, nothing half-written is left."""
    import subprocess

    src = small_scan.save(tmp_path / "src")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "fill.py"
    script.write_text("""
import dataclasses, json, os, sys
import mri_lens as ml
from mri_lens.storage.files import write_text_atomic
src, mnt, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = ml.Scan.load(src)
small = os.path.join(mnt, "small")
ml.Scan.load(dataclasses.replace(s, meta={"marker": "old"}).save(small))  # fits once, not twice
out = {}
for name, save in (("scan", lambda: s.save(small)),
                   ("file", lambda: write_text_atomic(os.path.join(mnt, "big.txt"), "x" * size))):
    try:
        save()
        out[name] = "saved"
    except Exception as e:
        out[name] = [type(e).__name__, str(e)]
out["old"] = ml.Scan.load(small).meta["marker"]
out["left"] = sorted(os.listdir(small)) + sorted(os.listdir(mnt))
print(json.dumps(out))
""")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    size = sum(len(v) for v in tree(src).values()) * 3 // 2 // 4096 * 4096  # room for one version, not two
    done = subprocess.run(["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size={size} tmpfs "$3" && exec "$0" "$@"',
                           sys.executable, str(script), str(src), str(mnt), str(size)],
                          capture_output=True, text=True, cwd=root, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for name, path in (("scan", mnt / "small"), ("file", mnt / "big.txt")):
        kind, message = out[name]
        assert kind == "ScanFileError" and str(path) in message and "the disk is full" in message, out
    assert out["old"] == "old"
    assert [x for x in out["left"] if x.startswith(".tmp-")] == []
