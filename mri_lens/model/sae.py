"""Sparse autoencoder and transcoder latents as units, in SAELens's saved format, read without SAELens.

A SAELens directory holds ``cfg.json`` (``architecture``, ``d_in``, ``d_sae``, ``apply_b_dec_to_input``,
``normalize_activations``, ``reshape_activations``, ``metadata.hook_name``...) and ``sae_weights.safetensors``
(``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_out]``, ``b_dec``, and ``threshold [d_sae]`` for
JumpReLU). The encoders here follow SAELens's inference conventions: the input normalised as the config says
(``constant_norm_rescale``: scaled to norm ``sqrt(d_in)``; ``layer_norm``: standardised), ``b_dec`` subtracted
when ``apply_b_dec_to_input``, ``pre = x @ W_enc + b_enc``; then ``standard``: ReLU; ``jumprelu``: ReLU where
``pre > threshold``, else 0; ``topk``: the ``k`` largest (scaled first by each latent's decoder norm when
``rescale_acts_by_decoder_norm``), ReLU, the rest 0. A transcoder reads the MLP input (its ``hook_name``) and
its decoder writes the MLP output (``d_out``). A SAELens ``SAE`` object in memory is used through its own
``encode`` (duck-typed: ``encode``, ``cfg.d_in``, ``cfg.d_sae``, ``cfg.metadata.hook_name``, ``W_dec``).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Sequence

from ..errors import ModelAdapterError
from .unit_base import HOOK_KINDS, UnitSet, hook_layer, hook_width, model_dims, weights_sha256

__all__ = ["ARCHITECTURES", "LatentUnits", "SAEEncoder", "read_sae_dir", "from_spec", "save_sae_dir"]

# architecture -> its activation: SAELens's SAEs and transcoders (a skip transcoder encodes as a transcoder)
ARCHITECTURES = {"standard": "relu", "jumprelu": "jumprelu", "topk": "topk", "transcoder": "relu",
                 "skip_transcoder": "relu", "jumprelu_transcoder": "jumprelu"}
NORMALISATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")
CFG_NAME, WEIGHTS_NAME = "cfg.json", "sae_weights.safetensors"
_TEMPLATE_KIND = {t: k for k, (t, _) in HOOK_KINDS.items() if k != "embed"}


def _err(where: str, why: str) -> ModelAdapterError:
    return ModelAdapterError(f"{where}: {why}")


def _read_cfg(path: str) -> dict[str, Any]:
    name = os.path.basename(os.path.normpath(path)) or path
    if not os.path.isdir(path):
        raise _err(f"SAE directory {name!r}", "not a directory (a SAELens SAE is a directory holding cfg.json and "
                   "sae_weights.safetensors)")
    cfg_path = os.path.join(path, CFG_NAME)
    if not os.path.isfile(cfg_path):
        raise _err(f"SAE directory {name!r}", f"no {CFG_NAME} (SAELens saves cfg.json beside {WEIGHTS_NAME})")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise _err(f"SAE directory {name!r}", f"{CFG_NAME} is not readable JSON ({e})") from None
    missing = [k for k in ("d_in", "d_sae") if not isinstance(cfg, dict) or not isinstance(cfg.get(k), int)]
    if missing:
        raise _err(f"SAE directory {name!r}", f"{CFG_NAME} is not a SAELens SAE config (no integer "
                   f"{' and '.join(missing)}); expected keys architecture, d_in, d_sae, metadata.hook_name")
    arch = cfg.get("architecture", "standard")
    if arch not in ARCHITECTURES:
        raise _err(f"SAE directory {name!r}", f"architecture {arch!r} is not supported; mri_lens reads "
                   f"{', '.join(ARCHITECTURES)} (load others with SAELens and pass the SAE object)")
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm not in NORMALISATIONS:
        raise _err(f"SAE directory {name!r}", f"normalize_activations {norm!r} is not one of {NORMALISATIONS}")
    return cfg


def read_sae_dir(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(cfg, tensors)`` of a SAELens directory, checked (one clear error per problem)."""
    from safetensors.torch import load_file

    path = os.fspath(path)
    cfg = _read_cfg(path)
    name = os.path.basename(os.path.normpath(path))
    wpath = os.path.join(path, WEIGHTS_NAME)
    if not os.path.isfile(wpath):
        raise _err(f"SAE directory {name!r}", f"no {WEIGHTS_NAME}")
    t = load_file(wpath)
    if "threshold" not in t and "log_threshold" in t:
        t["threshold"] = t.pop("log_threshold").exp()
    jump = ARCHITECTURES[cfg.get("architecture", "standard")] == "jumprelu"
    need = ["W_enc", "b_enc", "W_dec", "b_dec"] + (["threshold"] if jump else [])
    lacking = [k for k in need if k not in t]
    if lacking:
        raise _err(f"SAE directory {name!r}", f"{WEIGHTS_NAME} lacks {', '.join(lacking)}")
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    if tuple(t["W_enc"].shape) != (d_in, d_sae) or t["W_dec"].shape[0] != d_sae or tuple(t["b_enc"].shape) != (d_sae,):
        raise _err(f"SAE directory {name!r}", f"weights do not match d_in={d_in}, d_sae={d_sae} "
                   f"(W_enc {tuple(t['W_enc'].shape)}, W_dec {tuple(t['W_dec'].shape)})")
    return cfg, t


def _hook_of(cfg: Mapping[str, Any]) -> str | None:
    meta = cfg.get("metadata") or {}
    return meta.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point")  # SAELens 6, 5, older


class SAEEncoder:
    """One SAE's (or transcoder's) encoder, on torch tensors (see the module docstring for the conventions)."""

    def __init__(self, cfg: Mapping[str, Any], tensors: Mapping[str, Any]):
        import torch

        self.cfg = dict(cfg)
        self.architecture = cfg.get("architecture", "standard")
        self.activation = ARCHITECTURES[self.architecture]
        self.d_in, self.d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
        self.hook = _hook_of(cfg)
        self.norm = cfg.get("normalize_activations", "none") or "none"
        self.k = int(cfg.get("k", 100)) if self.architecture == "topk" else None
        self.rescale = bool(cfg.get("rescale_acts_by_decoder_norm", False)) and self.architecture == "topk"
        f32 = {k: v.detach().to(torch.float32) for k, v in tensors.items()
               if k in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}
        self.t = f32
        self.apply_b_dec = bool(cfg.get("apply_b_dec_to_input", "transcoder" not in self.architecture))
        if self.apply_b_dec and tuple(f32["b_dec"].shape) != (self.d_in,):
            raise ModelAdapterError(f"apply_b_dec_to_input is set but b_dec has shape {tuple(f32['b_dec'].shape)}, "
                                    f"not [d_in={self.d_in}] (a transcoder's b_dec is its output bias)")
        self.dec_norm = f32["W_dec"].norm(dim=-1) if self.rescale else None
        self.fingerprint = weights_sha256({k: v for k, v in tensors.items()})

    @property
    def W_dec(self):
        return self.t["W_dec"]

    def to(self, device: Any) -> "SAEEncoder":
        self.t = {k: v.to(device) for k, v in self.t.items()}
        if self.dec_norm is not None:
            self.dec_norm = self.dec_norm.to(device)
        return self

    def _normalise(self, x):
        if self.norm == "constant_norm_rescale":
            return x * (math.sqrt(self.d_in) / x.norm(dim=-1, keepdim=True))
        if self.norm == "layer_norm":
            x = x - x.mean(dim=-1, keepdim=True)
            return x / (x.std(dim=-1, keepdim=True) + 1e-5)
        return x  # "none"; "expected_average_only_in" is folded into the weights when SAELens saves

    def encode(self, x):
        """``[..., d_in]`` float32 -> latents ``[..., d_sae]`` float32."""
        import torch

        x = self._normalise(x)
        if self.apply_b_dec:
            x = x - self.t["b_dec"]
        pre = torch.addmm(self.t["b_enc"], x.reshape(-1, self.d_in), self.t["W_enc"]).view(*x.shape[:-1],
                                                                                         self.d_sae)
        if self.activation == "relu":
            return pre.relu_()
        if self.activation == "jumprelu":
            return pre.relu_().mul_(pre > self.t["threshold"])
        if self.dec_norm is not None:
            pre = pre.mul_(self.dec_norm)
        vals, idx = torch.topk(pre, self.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, vals.relu_())


class _ObjectEncoder:
    """A SAELens ``SAE`` object used through its own ``encode`` (duck-typed; SAELens is never imported)."""

    def __init__(self, sae: Any):
        cfg = getattr(sae, "cfg", None)
        missing = [a for a in ("encode", "W_dec") if not hasattr(sae, a)]
        if cfg is None or missing or not isinstance(getattr(cfg, "d_sae", None), int):
            raise ModelAdapterError(f"{type(sae).__name__} is not a SAELens SAE (it needs encode, W_dec, cfg.d_in, "
                                    "cfg.d_sae and cfg.metadata.hook_name); pass a SAELens SAE or a saved SAE "
                                    "directory")
        meta = getattr(cfg, "metadata", None)
        self.sae, self.cfg = sae, cfg
        arch = getattr(cfg, "architecture", "object")  # SAELens 6: a classmethod of the config
        self.architecture = str(arch() if callable(arch) else arch)
        self.d_in, self.d_sae = int(cfg.d_in), int(cfg.d_sae)
        self.hook = (getattr(meta, "hook_name", None) if meta is not None else None) or getattr(cfg, "hook_name", None)
        self.hook_z = getattr(cfg, "reshape_activations", "none") == "hook_z"
        sd = sae.state_dict() if hasattr(sae, "state_dict") else {"W_dec": sae.W_dec, "W_enc": sae.W_enc}
        self.fingerprint = weights_sha256(dict(sd))

    @property
    def W_dec(self):
        return self.sae.W_dec.detach().float()

    def to(self, device: Any) -> "_ObjectEncoder":
        self.sae.to(device)
        return self

    def encode(self, x):
        import torch

        dtype = getattr(self.sae, "dtype", torch.float32)
        with torch.inference_mode():
            return self.sae.encode(x.to(dtype)).to(torch.float32)


def _encoder(source: Any) -> SAEEncoder | _ObjectEncoder:
    if isinstance(source, (SAEEncoder, _ObjectEncoder)):
        return source
    if isinstance(source, (str, os.PathLike)):
        return SAEEncoder(*read_sae_dir(source))
    return _ObjectEncoder(source)


class LatentUnits(UnitSet):
    """SAE (``kind="sae"``) or transcoder (``kind="transcoder"``) latents, one encoder per layer:
    ``{layer: SAELens SAE object or saved directory}``. Latents are computed from the hook's activations in the
    scan's own batches, on the scan's device."""

    unit_noun = "latent"

    def __init__(self, saes: Mapping[int, Any], kind: str = "sae"):
        if not isinstance(saes, Mapping) or not saes:
            raise ValueError(f"{kind}s must be a non-empty dict {{layer: SAE or directory}}, got {saes!r:.80}")
        self.kind = kind
        self.encoders = {}
        for layer, src in saes.items():
            if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
                raise ValueError(f"{kind} layers must be non-negative layer numbers, got {layer!r}")
            self.encoders[int(layer)] = enc = _encoder(src)
            self._check_hook(int(layer), enc)

    def _check_hook(self, layer: int, enc: Any) -> None:
        if enc.hook is None and self.kind == "transcoder":
            enc.hook = HOOK_KINDS["mlp_in"][0].format(layer=layer)
        if not enc.hook:
            raise ModelAdapterError(f"the SAE for layer {layer} names no hook (cfg metadata.hook_name)")
        template, at = hook_layer(enc.hook)
        if at is not None and at != layer:
            raise ModelAdapterError(f"the {self.kind} given for layer {layer} reads `{enc.hook}` (layer {at})")

    def site(self, layer: int) -> str | None:
        template, _ = hook_layer(self.encoders[layer].hook)
        return _TEMPLATE_KIND.get(template)

    def hook_name(self, adapter: Any, layer: int) -> str:
        site = self.site(layer)
        if site == "mlp_post":
            return adapter.hook_name(layer)
        return self.encoders[layer].hook

    def default_layers(self, adapter: Any) -> list[int]:
        return sorted(self.encoders)

    def input_width(self, adapter: Any, layer: int) -> int | None:
        site = self.site(layer)
        return None if site is None else hook_width(adapter, site)

    def width(self, adapter: Any, layer: int) -> int:
        return self.encoders[layer].d_sae

    def check(self, adapter: Any, layers: Sequence[int] | None) -> list[int]:
        layers = super().check(adapter, layers)
        for l in layers:
            enc, have = self.encoders[l], self.input_width(adapter, l)
            if self.site(l) is None and adapter.is_hf:
                raise ModelAdapterError(f"the {self.kind} of layer {l} reads `{enc.hook}`, which the Hugging Face "
                                        f"backend cannot place; it reads the hook kinds {', '.join(HOOK_KINDS)}")
            if have is not None and have != enc.d_in:
                raise ModelAdapterError(f"the {self.kind} of layer {l} has d_in={enc.d_in} but its hook "
                                        f"`{enc.hook}` is {have} wide on this model: it was trained on another model "
                                        "or hook")
        return layers

    def encode(self, layer: int, act):
        enc = self.encoders[layer]
        if act.dim() == 4 and not getattr(enc, "hook_z", False):
            act = act.flatten(2)
        return enc.encode(act)

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps({str(l): e.fingerprint for l, e in sorted(self.encoders.items())}
                                         ).encode()).hexdigest()

    def describe(self, adapter: Any, layers: Sequence[int]) -> dict[str, Any]:
        return {**super().describe(adapter, layers),
                "architectures": {str(l): self.encoders[l].architecture for l in layers},
                "fingerprints": {str(l): self.encoders[l].fingerprint for l in layers}}

    def describe_short(self) -> str:
        return f"the {self.kind} latents"

    def output_directions(self, adapter: Any, layer: int):
        """``W_dec`` rows where the decoder writes the residual stream (``[d_sae, d_model]``); an SAE of the MLP
        neurons: ``W_dec @ W_out``; else None."""
        w = self.encoders[layer].W_dec
        d_model = model_dims(adapter)["d_model"]
        if self.kind == "transcoder" or self.site(layer) in ("resid_pre", "resid_mid", "resid_post", "mlp_out",
                                                              "attn_out", "embed"):
            return w if w.shape[1] == d_model else None
        if self.site(layer) == "mlp_post":
            w_out = adapter.neuron_output_weights(layer)
            return w.to(w_out.device, w_out.dtype) @ w_out
        return None

    def to(self, device: Any) -> "LatentUnits":
        for e in self.encoders.values():
            e.to(device)
        return self


def from_spec(spec: str) -> LatentUnits:
    """``"sae:6=DIR"`` or ``"transcoder:3=DIR"`` (several: ``"sae:4=DIR,6=DIR"``), the command line's form."""
    kind, _, rest = spec.partition(":")
    saes = {}
    for item in rest.split(","):
        layer, eq, path = item.partition("=")
        if not eq or not layer.strip().isdigit() or not path:
            raise ValueError(f"--units {kind}: expected {kind}:LAYER=DIR (e.g. {kind}:3=my_{kind}), got {spec!r}")
        saes[int(layer)] = path
    return LatentUnits(saes, kind=kind)


def save_sae_dir(path: str | os.PathLike, cfg: Mapping[str, Any], tensors: Mapping[str, Any]) -> None:
    """Write ``cfg.json`` and ``sae_weights.safetensors`` in SAELens's saved format."""
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, os.path.join(path, WEIGHTS_NAME))
    with open(os.path.join(path, CFG_NAME), "w", encoding="utf-8") as f:
        json.dump(dict(cfg), f, indent=1, sort_keys=True)
