"""SAE and transcoder latents: a scan equals SAELens's encode of the cached hook input (written out in numpy), for
each architecture and normalisation, for a directory and for an SAE object; bad input fails before the model runs;
sharded scans and merges of latents behave as for neurons."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import mri_lens as ml
from mri_lens.errors import ModelAdapterError, ScanError

from brute import TEXTS, check_scan, scan_of, tl_per_token
from saes import make_sae, np_encode

D_MODEL, D_MLP = 128, 512


def _latents(cfg, t):
    return lambda l, x: torch.from_numpy(np_encode(cfg, t, x.numpy()).astype(np.float32))


CASES = [
    ("standard", {}),
    ("jumprelu", {}),
    ("topk", {"k": 7}),
    ("topk", {"k": 5, "rescale_acts_by_decoder_norm": True}),
    ("standard", {"normalize_activations": "constant_norm_rescale"}),
    ("standard", {"normalize_activations": "layer_norm"}),
]


@pytest.mark.parametrize("arch,extra", CASES)
def test_sae_dir_latents_equal_encode_of_the_cache(tiny, tmp_path, arch, extra):
    path, cfg, t = make_sae(tmp_path / "sae", D_MODEL, 256, "blocks.2.hook_resid_post", arch=arch, **extra)
    scan = scan_of(tiny, ml.units.sae({2: path}))
    assert scan.layers == [2] and scan.d_mlp == 256
    u = scan.meta["units"]
    assert u["kind"] == "sae" and u["architectures"] == {"2": arch} and len(u["fingerprint"]) == 64
    check_scan(scan, tl_per_token(tiny, scan, [2], "resid_post", _latents(cfg, t)), skip=1, atol=2e-5)


def test_transcoder_reads_the_mlp_input(tiny, tmp_path):
    path, cfg, t = make_sae(tmp_path / "tc", D_MODEL, 300, "blocks.1.ln2.hook_normalized", arch="transcoder",
                            d_out=D_MODEL)
    units = ml.units.transcoder({1: path})
    scan = scan_of(tiny, units)
    assert scan.meta["units"]["kind"] == "transcoder" and scan.d_mlp == 300
    check_scan(scan, tl_per_token(tiny, scan, [1], "mlp_in", _latents(cfg, t)), skip=1, atol=2e-5)
    from mri_lens.model.adapter import as_adapter

    w = units.output_directions(as_adapter(tiny), 1)  # the decoder writes the MLP output: the residual stream
    np.testing.assert_allclose(w.numpy(), t["W_dec"], atol=1e-6)


def test_sae_of_mlp_neurons_and_of_attention_z(tiny, tmp_path):
    p1, c1, t1 = make_sae(tmp_path / "m", D_MLP, 64, "blocks.3.mlp.hook_post", seed=1)
    p2, c2, t2 = make_sae(tmp_path / "z", D_MODEL, 64, "blocks.0.attn.hook_z", seed=2, reshape_activations="hook_z")
    s1 = scan_of(tiny, ml.units.sae({3: p1}))
    check_scan(s1, tl_per_token(tiny, s1, [3], "mlp_post", _latents(c1, t1)), skip=1, atol=2e-5)
    s2 = scan_of(tiny, ml.units.sae({0: p2}))
    check_scan(s2, tl_per_token(tiny, s2, [0], "attn_z", _latents(c2, t2)), skip=1, atol=2e-5)


class _TorchSAE(torch.nn.Module):
    """An SAE object with SAELens's public surface (what mri_lens reads of one): ``cfg.d_in``, ``cfg.d_sae``,
    ``cfg.metadata.hook_name``, ``encode``, ``W_dec``."""

    def __init__(self, t, hook):
        super().__init__()
        for k, v in t.items():
            setattr(self, k, torch.nn.Parameter(torch.as_tensor(v, dtype=torch.float32)))
        meta = type("Meta", (), {"hook_name": hook})()
        self.cfg = type("Cfg", (), {"d_in": t["W_enc"].shape[0], "d_sae": t["W_enc"].shape[1], "metadata": meta,
                                    "architecture": "standard"})()
        self.dtype = torch.float32

    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)


def test_sae_object_equals_its_directory(tiny, tmp_path):
    path, cfg, t = make_sae(tmp_path / "sae", D_MODEL, 128, "blocks.1.hook_resid_pre")
    from_dir = scan_of(tiny, ml.units.sae({1: path}))
    from_obj = scan_of(tiny, ml.units.sae({1: _TorchSAE(t, "blocks.1.hook_resid_pre")}))
    np.testing.assert_allclose(from_obj.pooled("mean"), from_dir.pooled("mean"), atol=1e-5)
    np.testing.assert_array_equal(from_obj.top.docs[..., 0], from_dir.top.docs[..., 0])


def test_bad_saes_fail_with_one_clear_error_each(tiny, tmp_path):
    with pytest.raises(ModelAdapterError, match="no cfg.json"):
        ml.units.sae({2: str(tmp_path)})
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "cfg.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 128}))
    with pytest.raises(ModelAdapterError, match="not a SAELens SAE config"):
        ml.units.sae({2: str(foreign)})
    path, _, _ = make_sae(tmp_path / "gated", D_MODEL, 32, "blocks.2.hook_resid_post")
    cfg = json.loads((tmp_path / "gated" / "cfg.json").read_text())
    (tmp_path / "gated" / "cfg.json").write_text(json.dumps({**cfg, "architecture": "gated"}))
    with pytest.raises(ModelAdapterError, match="architecture 'gated' is not supported"):
        ml.units.sae({2: path})
    wide, _, _ = make_sae(tmp_path / "wide", 256, 32, "blocks.2.hook_resid_post")
    with pytest.raises(ModelAdapterError, match="d_in=256 but its hook `blocks.2.hook_resid_post` is 128 wide"):
        scan_of(tiny, ml.units.sae({2: wide}))
    nohook, _, _ = make_sae(tmp_path / "nohook", D_MODEL, 32, "blocks.2.hook_resid_nope")
    with pytest.raises(ModelAdapterError, match="no hook `blocks.2.hook_resid_nope`"):
        scan_of(tiny, ml.units.sae({2: nohook}))
    with pytest.raises(ModelAdapterError, match="given for layer 1 reads `blocks.2.hook_resid_post`"):
        ml.units.sae({1: wide})


def test_sharded_scan_of_latents_equals_one_process_and_units_are_checked(tiny, tmp_path):
    path, _, _ = make_sae(tmp_path / "sae", D_MODEL, 200, "blocks.2.hook_resid_post", arch="topk", k=9)
    units = ml.units.sae({2: path})
    one = scan_of(tiny, units)
    sharded = scan_of(tiny, units, out=tmp_path / "run", shard_tokens=20)
    assert sharded.meta["n_shards"] > 2
    np.testing.assert_array_equal(sharded.pooled("max"), one.pooled("max"))
    np.testing.assert_allclose(sharded.pooled("mean"), one.pooled("mean"), atol=1e-6)
    np.testing.assert_array_equal(sharded.top.docs, one.top.docs)
    np.testing.assert_allclose(sharded.stats.mean, one.stats.mean, atol=1e-6)
    loaded = ml.Scan.load(tmp_path / "run")
    assert loaded.meta["units"] == one.meta["units"]
    other, _, _ = make_sae(tmp_path / "other", D_MODEL, 200, "blocks.2.hook_resid_post", arch="topk", k=9, seed=5)
    with pytest.raises(Exception, match="another|other|differ"):  # a resume with other SAE weights is refused
        scan_of(tiny, ml.units.sae({2: other}), out=tmp_path / "run", shard_tokens=20)
    a = ml.scan(tiny, TEXTS[:4], units=units, progress=False)
    b = ml.scan(tiny, TEXTS[4:], units=ml.units.sae({2: other}), progress=False)
    with pytest.raises(ScanError, match="different units"):
        ml.merge_scans([a, b])
    c = ml.scan(tiny, TEXTS[4:], units=units, progress=False)
    merged = ml.merge_scans([a, c])
    np.testing.assert_allclose(merged.pooled("max"), one.pooled("max"), rtol=1e-5, atol=1e-5)  # other batches


@pytest.mark.parametrize("which", ["sae", "transcoder"])
def test_shipped_sae_and_transcoder_equal_encode_of_the_cache(tiny, which):
    from safetensors.numpy import load_file

    path = ml.models.tiny_sae_dir() if which == "sae" else ml.models.tiny_transcoder_dir()
    cfg = json.load(open(os.path.join(path, "cfg.json"), encoding="utf-8"))
    t = {k: v.astype(np.float64) for k, v in load_file(os.path.join(path, "sae_weights.safetensors")).items()}
    layer, kind = (2, "resid_post") if which == "sae" else (1, "mlp_in")
    assert cfg["metadata"]["hook_name"] == ("blocks.2.hook_resid_post" if which == "sae"
                                            else "blocks.1.ln2.hook_normalized")
    units = ml.units.sae({layer: path}) if which == "sae" else ml.units.transcoder({layer: path})
    scan = scan_of(tiny, units)
    check_scan(scan, tl_per_token(tiny, scan, [layer], kind, _latents(cfg, t)), skip=1, atol=2e-5)
    card = json.load(open(os.path.join(path, "training.json"), encoding="utf-8"))
    assert card["fraction_of_variance_explained"] > 0.5 and card["l0"] < cfg["d_sae"] / 4
