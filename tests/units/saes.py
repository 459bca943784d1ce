"""Random SAEs of each SAELens architecture, written in SAELens's saved format, and an independent numpy encoder."""

from __future__ import annotations

import numpy as np
import torch

from mri_lens.model.sae import save_sae_dir


def make_sae(path, d_in: int, d_sae: int, hook: str, *, arch: str = "standard", seed: int = 0, **cfg_extra):
    g = torch.Generator().manual_seed(seed)
    t = {"W_enc": torch.randn(d_in, d_sae, generator=g) * 0.3, "b_enc": torch.randn(d_sae, generator=g) * 0.1,
         "W_dec": torch.randn(d_sae, cfg_extra.get("d_out", d_in), generator=g) * 0.2,
         "b_dec": torch.randn(cfg_extra.get("d_out", d_in), generator=g) * 0.1}
    if "jumprelu" in arch:
        t["threshold"] = torch.rand(d_sae, generator=g) * 0.5
    cfg = {"architecture": arch, "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": "transcoder" not in arch, "normalize_activations": "none",
           "reshape_activations": "none", "metadata": {"hook_name": hook, "sae_lens_version": "6.0.0"}, **cfg_extra}
    save_sae_dir(path, cfg, t)
    return str(path), cfg, {k: v.numpy().astype(np.float64) for k, v in t.items()}


def np_encode(cfg, t, x: np.ndarray) -> np.ndarray:
    """SAELens's encode, written out in float64 numpy. ``x``: [n, d_in]."""
    x = x.astype(np.float64)
    norm = cfg.get("normalize_activations", "none")
    if norm == "constant_norm_rescale":
        x = x * np.sqrt(cfg["d_in"]) / np.linalg.norm(x, axis=-1, keepdims=True)
    elif norm == "layer_norm":
        x = x - x.mean(-1, keepdims=True)
        x = x / (x.std(-1, ddof=1, keepdims=True) + 1e-5)
    if cfg.get("apply_b_dec_to_input"):
        x = x - t["b_dec"]
    pre = x @ t["W_enc"] + t["b_enc"]
    arch = cfg["architecture"]
    if "jumprelu" in arch:
        return np.where(pre > t["threshold"], np.maximum(pre, 0), 0.0)
    if arch == "topk":
        if cfg.get("rescale_acts_by_decoder_norm"):
            pre = pre * np.linalg.norm(t["W_dec"], axis=-1)
        out = np.zeros_like(pre)
        idx = np.argsort(-pre, axis=-1)[:, :cfg["k"]]
        np.put_along_axis(out, idx, np.maximum(np.take_along_axis(pre, idx, -1), 0), -1)
        return out
    return np.maximum(pre, 0)
