"""What identifies a scan: a fingerprint of every weight of the model (recorded in the scan, its plan and so its
parts), checked by resume and by merge_scans; merge_scans refuses the same documents twice and malformed input."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch

import mri_lens as ml
from mri_lens import ModelAdapterError, ScanError, ScanFileError
from mri_lens.model import fingerprint as fp

from corpora import PROSE, code_snippets

EDITED = "h.1.mlp.c_fc.weight"  # a tensor in the middle of the model: the old fingerprint never read it


def _double_in_safetensors(model_dir, name: str = "transformer." + EDITED) -> None:
    """Double one tensor of the model directory's weights file, in place."""
    from safetensors.torch import load_file, save_file

    path = os.path.join(model_dir, "model.safetensors")
    tensors = load_file(path)
    key = name if name in tensors else name.removeprefix("transformer.")
    tensors[key] = tensors[key] * 2
    save_file(tensors, path, metadata={"format": "pt"})


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Two copies of the tiny LM, both directories named ``tiny_lm`` (the same model name): ``clean`` and
    ``edited`` (one MLP matrix doubled)."""
    root = tmp_path_factory.mktemp("models")
    clean, edited = root / "clean" / "tiny_lm", root / "edited" / "tiny_lm"
    for d in (clean, edited):
        shutil.copytree(ml.models.tiny_lm_dir(), d)
    _double_in_safetensors(edited)
    return {"clean": str(clean), "edited": str(edited)}


@pytest.fixture(scope="module")
def hf_tiny():
    return ml.models.tiny_lm(device="cpu", backend="hf")


# ---------------------------------------------------------------------------------------------- the fingerprint
def test_fingerprint_sees_one_element_of_every_tensor(hf_tiny):
    """Change the last element of any one tensor (past the first 64 KiB of the big ones): the fingerprint changes;
    put it back: the fingerprint is the old one."""
    model = hf_tiny.model
    base = fp.weights_fingerprint(model)
    names = [n for n, _ in fp.named_weights(model)]
    assert len(names) == len(list(model.parameters())) == 52
    for name, t in fp.named_weights(model):
        with torch.no_grad():
            old = t.reshape(-1)[-1].clone()
            t.reshape(-1)[-1] += 1.0
            assert fp.weights_fingerprint(model) != base, name
            t.reshape(-1)[-1] = old
    assert fp.weights_fingerprint(model) == base


def test_fingerprint_of_each_backend(tiny, hf_tiny, model_dirs):
    """The TL bridge and the Hugging Face model: one fingerprint per weight set, the same for every load of it,
    another for the edited directory, another in bfloat16; an offloaded model (its weights on the meta device,
    their values in accelerate's weights map on disk) is fingerprinted from the offloaded values."""
    clean_tl = fp.weights_fingerprint(ml.load_model(model_dirs["clean"], device="cpu"))
    assert clean_tl == fp.weights_fingerprint(tiny)
    assert fp.weights_fingerprint(ml.load_model(model_dirs["edited"], device="cpu")) != clean_tl
    clean_hf = fp.weights_fingerprint(hf_tiny.model)
    assert clean_hf == fp.weights_fingerprint(ml.load_model(model_dirs["clean"], device="cpu", backend="hf").model)
    assert fp.weights_fingerprint(ml.load_model(model_dirs["edited"], device="cpu", backend="hf").model) != clean_hf
    bf16 = ml.load_model(model_dirs["clean"], device="cpu", backend="hf", dtype=torch.bfloat16).model
    bf16_print = fp.weights_fingerprint(bf16)
    assert bf16_print not in (clean_hf, None)
    with torch.no_grad():
        w = bf16.h[1].mlp.c_fc.weight
        w[-1, -1] = -w[-1, -1] if w[-1, -1] != 0 else 1.0
    assert fp.weights_fingerprint(bf16) != bf16_print


def test_offloaded_and_meta_weights(hf_tiny, model_dirs, tmp_path):
    device_map = {"wte": "cpu", "wpe": "cpu", "h.0": "cpu", "h.1": "disk", "h.2": "disk", "h.3": "cpu",
                  "ln_f": "cpu"}
    off = ml.load_model(model_dirs["clean"], backend="hf", device_map=device_map, offload_folder=str(tmp_path))
    assert any(p.device.type == "meta" for p in off.model.parameters())
    assert fp.weights_fingerprint(off.model) == fp.weights_fingerprint(hf_tiny.model)
    off_edited = ml.load_model(model_dirs["edited"], backend="hf", device_map=device_map,
                               offload_folder=str(tmp_path / "edited"))
    assert fp.weights_fingerprint(off_edited.model) != fp.weights_fingerprint(off.model)
    with torch.device("meta"):
        empty = torch.nn.Linear(4, 4)
    with pytest.raises(ModelAdapterError, match="weight is on the meta device"):
        fp.weights_fingerprint(empty)
    assert fp.weights_fingerprint(object()) is None and fp.weights_fingerprint(torch.nn.ReLU()) is None


def test_digest_is_the_values_not_the_layout(monkeypatch):
    """A transposed view, a tensor copied to the host in many small chunks and one hashed in place give the same
    digest when their values are the same (row-major), another when one element differs."""
    x = torch.arange(6000, dtype=torch.float32).reshape(60, 100)
    strided = x.t().contiguous().t()  # same values, column-major storage
    assert not strided.is_contiguous()
    whole = fp.tensor_digest(x)
    monkeypatch.setattr(fp, "CHUNK_BYTES", 1000)  # 3 rows per host copy
    assert fp.tensor_digest(strided) == whole
    strided[59, 99] += 1
    assert fp.tensor_digest(strided) != whole
    assert fp.tensor_digest(torch.tensor(3.0)) != fp.tensor_digest(torch.tensor(4.0))


def test_fingerprint_is_recorded_in_the_scan_its_plan_and_its_parts(tiny, tmp_path):
    corpus = ml.Corpus(PROSE)
    out = tmp_path / "run"
    s = ml.scan(tiny, corpus, out=out, shard_tokens=100, batch_size=4, progress=False, pooling=("mean",))
    expected = fp.weights_fingerprint(tiny)
    assert s.meta["weights_sha256"] == expected and ml.Scan.load(out).meta["weights_sha256"] == expected
    (run,) = [d for d in os.listdir(out) if d.startswith("run-")]
    plan = json.loads((out / run / "plan.json").read_text())
    assert plan["model"]["weights_sha256"] == expected
    parts = [d for d in os.listdir(out / run) if d.startswith("part-")]
    assert len(parts) == s.meta["n_shards"] >= 2
    # each part is bound to the plan hash, and the plan hash covers the fingerprint
    def sha(obj):
        return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    assert sha(plan) == s.meta["plan_hash"]
    assert sha({**plan, "model": {**plan["model"], "weights_sha256": "0" * 64}}) != s.meta["plan_hash"]
    for p in parts:
        assert json.loads((out / run / p / "manifest.json").read_text())["meta"]["plan_hash"] == s.meta["plan_hash"]


# ---------------------------------------------------------------------------------------------- resume
def _interrupted_scan(model_dir: str, corpus, out, kw: dict, after_forwards: int) -> int:
    """Scan into ``out`` and stop it by an exception in the model's embedding after ``after_forwards`` forward
    passes (what a kill leaves: the finished parts on disk, no scan). Returns how many parts were finished."""
    model = ml.load_model(model_dir, device="cpu")
    wte = next(m for n, m in model.named_modules() if n.split(".")[-1] in ("wte", "embed"))
    calls = [0]

    def stop(module, args):
        calls[0] += 1
        if calls[0] > after_forwards:
            raise RuntimeError("interrupted")

    wte.register_forward_pre_hook(stop)
    with pytest.raises(RuntimeError, match="interrupted"):
        ml.scan(model, corpus, out=out, **kw)
    assert not (out / "manifest.json").exists()
    (run,) = [d for d in os.listdir(out) if d.startswith("run-")]
    return sum((out / run / p / "manifest.json").exists() for p in os.listdir(out / run) if p.startswith("part-"))


def test_resume_after_the_model_was_edited_recomputes_everything(model_dirs, tmp_path):
    """Stop a sharded scan after some parts, double an MLP matrix in the model directory, run it again: the run
    of the old weights is refused (not resumed), and with overwrite=True every shard is computed again and the
    result equals a clean scan of the edited model. Unedited, the same interruption resumes (the control)."""
    model_dir = str(tmp_path / "tiny_lm")
    shutil.copytree(model_dirs["clean"], model_dir)
    corpus = ml.Corpus(code_snippets(12, chars=400) + PROSE[:8])
    kw = dict(shard_tokens=300, batch_size=4, pooling=("mean", "max"), progress=False)
    out, control = tmp_path / "run", tmp_path / "control"
    finished = _interrupted_scan(model_dir, corpus, out, kw, after_forwards=3)
    assert finished >= 2
    shutil.copytree(out, control)
    resumed = ml.scan(model_dir, corpus, out=control, **kw)
    assert resumed.meta["run"]["resumed"] == finished

    _double_in_safetensors(model_dir)
    with pytest.raises(ScanFileError, match="another corpus, model or options"):
        ml.scan(model_dir, corpus, out=out, **kw)
    again = ml.scan(model_dir, corpus, out=out, overwrite=True, **kw)
    assert again.meta["run"]["resumed"] == 0 and again.meta["run"]["computed"] == again.meta["n_shards"]
    clean_edited = ml.scan(model_dirs["edited"], corpus, **kw)
    assert again.meta["weights_sha256"] == clean_edited.meta["weights_sha256"] != resumed.meta["weights_sha256"]
    for p in ("mean", "max"):
        np.testing.assert_array_equal(again.pooled(p), clean_edited.pooled(p))
        assert not np.array_equal(again.pooled(p), resumed.pooled(p))
    np.testing.assert_array_equal(again.stats.max, clean_edited.stats.max)
    np.testing.assert_array_equal(again.top.docs, clean_edited.top.docs)


# ---------------------------------------------------------------------------------------------- merge_scans
@pytest.fixture(scope="module")
def halves(tiny):
    corpus = ml.Corpus(code_snippets(8) + PROSE[:8], ["code"] * 8 + ["prose"] * 8)
    kw = dict(progress=False, pooling=("mean",))
    return {"a": ml.scan(tiny, corpus.subset(range(8)), **kw), "b": ml.scan(tiny, corpus.subset(range(8, 16)), **kw),
            "corpus": corpus, "kw": kw}


def test_merge_refuses_scans_of_other_weights(halves, model_dirs):
    """Same name, same tokenizer, one matrix doubled: refused, with the reason."""
    edited = ml.scan(ml.load_model(model_dirs["edited"], device="cpu"), halves["corpus"].subset(range(8, 16)),
                     **halves["kw"])
    a = halves["a"]
    assert edited.meta["model_id"] == a.meta["model_id"] and edited.tokenizer_json == a.tokenizer_json
    with pytest.raises(ScanError, match="both of '.*' but of other weights"):
        ml.merge_scans([a, edited])
    old_style = copy.copy(halves["b"])  # as saved before scans recorded a weights fingerprint
    old_style.meta = {k: v for k, v in halves["b"].meta.items() if k != "weights_sha256"}
    with pytest.raises(ScanError, match="records no weights fingerprint"):
        ml.merge_scans([a, old_style])


def test_merge_refuses_the_same_documents_twice(halves, tiny):
    a, b = halves["a"], halves["b"]
    with pytest.raises(ScanError, match="scans 0 and 1 hold the same documents"):
        ml.merge_scans([a, a])
    ab = ml.merge_scans([a, b])
    assert ab.n_docs == 16 and ab.meta["merged_from"] == [a.meta["corpus_fingerprint"], b.meta["corpus_fingerprint"]]
    with pytest.raises(ScanError, match="scans 0 and 1 hold the same documents"):
        ml.merge_scans([ab, b])
    # overlapping corpora (another corpus fingerprint, a shared document): refused by the document's tokens
    overlap = ml.scan(tiny, halves["corpus"].subset([7, 8]), **halves["kw"])
    with pytest.raises(ScanError, match="document 1 of scan 1 has the same tokens and label as document 0 of scan 0"):
        ml.merge_scans([b, overlap])
    # a corpus that repeats a text, split across scans: merged when asked to
    rep = ml.scan(tiny, ml.Corpus([PROSE[9], PROSE[0]], ["prose", "prose"]), **halves["kw"])
    merged = ml.merge_scans([b, rep], allow_duplicates=True)
    assert merged.n_docs == 10
    np.testing.assert_allclose(merged.pooled("mean")[9], merged.pooled("mean")[0], atol=1e-5)  # both PROSE[0]
    # the same tokens under another label are other documents
    relabelled = ml.scan(tiny, ml.Corpus([PROSE[0]], ["news"]), **halves["kw"])
    assert ml.merge_scans([b, relabelled]).n_docs == 9


def test_merge_refuses_malformed_input(halves, tmp_path):
    a, b = halves["a"], halves["b"]
    for bad, what in ((["0", "1"], "str '0'"), ([0.0, 1.5], "float 0.0"), ([True, False], "bool True")):
        ids = [list(range(8)), bad + list(range(10, 16))]
        with pytest.raises(ScanError, match=f"doc_ids\\[1\\] must hold integers .*it holds {what}"):
            ml.merge_scans([a, b], doc_ids=ids)
    with pytest.raises(ScanError, match="doc_ids\\[0\\] must be a sequence of document ids"):
        ml.merge_scans([a, b], doc_ids=[3, range(8, 16)])
    with pytest.raises(ScanError, match="scan 1 has 8 documents, doc_ids\\[1\\] 7 ids"):
        ml.merge_scans([a, b], doc_ids=[range(8), range(8, 15)])
    with pytest.raises(ScanError, match="2 scans, 1 sequences"):
        ml.merge_scans([a, b], doc_ids=[range(16)])
    with pytest.raises(ScanError, match="item 1 is a str \\(a saved scan: load it first with Scan.load\\)"):
        ml.merge_scans([a, str(tmp_path)])
    with pytest.raises(ScanError, match="item 0 is a dict"):
        ml.merge_scans([{}, a])
    with pytest.raises(ScanError, match="got one Scan"):
        ml.merge_scans(a)
    # integer ids of any integer type, ranges and arrays, are fine: b first, then a
    m = ml.merge_scans([a, b], doc_ids=[np.arange(8, 16, dtype=np.int32), range(8)])
    np.testing.assert_array_equal(m.pooled("mean")[:8], b.pooled("mean"))
