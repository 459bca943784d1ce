"""Train the small SAE and transcoder that ship beside the tiny LM, in SAELens's saved format.

* an SAE (ReLU, "standard") on the residual stream after block 2 (``blocks.2.hook_resid_post``, d_model 128);
* a transcoder on MLP 1: it reads the MLP's input (``blocks.1.ln2.hook_normalized``) and predicts its output
  (``blocks.1.hook_mlp_out``).

Data: the tiny LM's activations on the standard library's top-level modules (the text it was trained on), every
tenth file held out for the card's numbers. Seeded, CPU, a few minutes.

Usage::

    python scripts/train_sae.py --out mri_lens/model/bundled [--steps 800]

Writes ``<out>/tiny_sae_resid2/`` and ``<out>/tiny_transcoder_mlp1/`` (cfg.json, sae_weights.safetensors,
training.json) and ``<out>/SAE_CARD.md``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sysconfig

import torch

import mri_lens as ml
from mri_lens.model.capture import token_activations
from mri_lens.model.sae import save_sae_dir


def stdlib_texts(every: int = 10) -> tuple[list[str], list[str]]:
    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")), key=os.path.basename)
    texts = []
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            texts.append(fh.read())
    held = [t for i, t in enumerate(texts) if i % every == every - 1]
    train = [t for i, t in enumerate(texts) if i % every != every - 1]
    return train, held


def windows(model, texts: list[str], n_tokens: int, ctx: int = 128) -> list[list[int]]:
    """Token windows of ``ctx`` tokens (BOS first) from ``texts`` until ``n_tokens`` tokens."""
    tok = model.tokenizer
    bos = tok.bos_token_id
    out, total = [], 0
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        for s in range(0, len(ids) - ctx, ctx):
            out.append([bos] + ids[s:s + ctx - 1])
            total += ctx - 1
            if total >= n_tokens:
                return out
    return out


def activations(model, seqs, layer: int, kind: str) -> torch.Tensor:
    """``[n_tokens, width]`` of hook kind ``kind`` at ``layer`` (BOS left out)."""
    acts = token_activations(model, seqs, [layer], units=kind, batch_size=32)
    return torch.cat([torch.from_numpy(a[layer][1:]) for a in acts])


def train(x: torch.Tensor, y: torch.Tensor, d_sae: int, *, steps: int, l1: float, apply_b_dec: bool,
          seed: int, batch: int = 512) -> dict[str, torch.Tensor]:
    """A ReLU dictionary ``y ~ relu((x - b_dec?) @ W_enc + b_enc) @ W_dec + b_dec``: MSE plus an L1 penalty on
    latents weighted by their decoder norms; Adam."""
    g = torch.Generator().manual_seed(seed)
    d_in, d_out = x.shape[1], y.shape[1]
    W_dec = torch.randn(d_sae, d_out, generator=g)
    W_dec = (W_dec / W_dec.norm(dim=1, keepdim=True) * 0.1).requires_grad_()
    W_enc = (W_dec.detach().T.clone() if d_in == d_out else torch.randn(d_in, d_sae, generator=g) * 0.1
             ).requires_grad_()
    b_enc = torch.zeros(d_sae, requires_grad=True)
    b_dec = y.mean(0).clone().requires_grad_()
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=2e-3)
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        xb, yb = x[idx], y[idx]
        f = torch.relu((xb - b_dec if apply_b_dec else xb) @ W_enc + b_enc)
        rec = f @ W_dec + b_dec
        loss = (rec - yb).square().sum(-1).mean() + l1 * (f * W_dec.norm(dim=1)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    return {"W_enc": W_enc.detach(), "b_enc": b_enc.detach(), "W_dec": W_dec.detach(), "b_dec": b_dec.detach()}


def evaluate(t: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, apply_b_dec: bool) -> dict:
    with torch.no_grad():
        f = torch.relu((x - t["b_dec"] if apply_b_dec else x) @ t["W_enc"] + t["b_enc"])
        rec = f @ t["W_dec"] + t["b_dec"]
        fve = 1 - float((rec - y).square().sum() / (y - y.mean(0)).square().sum())
    return {"l0": round(float((f > 0).sum(-1).float().mean()), 2), "fraction_of_variance_explained": round(fve, 4),
            "dead_latents": int(((f > 0).sum(0) == 0).sum()), "held_out_tokens": int(len(x))}


def cfg_for(kind: str, d_in: int, d_sae: int, d_out: int, hook: str, hook_out: str | None) -> dict:
    cfg = {"architecture": "standard" if kind == "sae" else "transcoder", "d_in": d_in, "d_sae": d_sae,
           "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": kind == "sae",
           "normalize_activations": "none", "reshape_activations": "none",
           "metadata": {"hook_name": hook, "model_name": "mri_lens tiny_lm", "prepend_bos": True,
                        "context_size": 128, "sae_lens_version": "6.0.0",  # SAELens >= 6 reads metadata
                        "sae_lens_training_version": "6.0.0"}}
    if kind == "transcoder":
        cfg["d_out"] = d_out
        cfg["metadata"]["hook_name_out"] = hook_out
    return cfg


def _row(name: str, hook: str, hook_out: str | None, d_in: int, d_sae: int, ev: dict) -> str:
    reads = f"`{hook}`" + (f" -> `{hook_out}`" if hook_out else "")
    return (f"| `{name}` | {reads} | {d_in} -> {d_sae} | {ev['l0']} | {ev['fraction_of_variance_explained']} | "
            f"{ev['dead_latents']} | {ev['training_tokens']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--tokens", type=int, default=60_000)
    ap.add_argument("--d-sae", type=int, default=512)
    ap.add_argument("--only", choices=("sae", "transcoder"), default=None, help="train one of the two")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = ml.models.tiny_lm(device="cpu")
    train_texts, held_texts = stdlib_texts()
    tr, ho = windows(model, train_texts, args.tokens), windows(model, held_texts, 20_000)
    jobs = [("sae", "tiny_sae_resid2", 2, "resid_post", "resid_post", 1.0, "blocks.2.hook_resid_post", None),
            ("transcoder", "tiny_transcoder_mlp1", 1, "mlp_in", "mlp_out", 3e-3, "blocks.1.ln2.hook_normalized",
             "blocks.1.hook_mlp_out")]
    card = ["# The tiny LM's SAE and transcoder", "",
            "Trained by `scripts/train_sae.py` on the tiny LM's activations over the standard library's top-level "
            "modules (every tenth file held out); SAELens's saved format (`cfg.json` + `sae_weights.safetensors`).",
            "", "| directory | reads | d_in -> d_sae | L0 | fraction of variance explained | dead latents | "
            "training tokens |", "|---|---|---|---|---|---|---|"]
    for kind, name, layer, k_in, k_out, l1, hook, hook_out in jobs:
        if args.only and kind != args.only:  # the other one stays as trained
            with open(os.path.join(args.out, name, "training.json"), encoding="utf-8") as f:
                ev = json.load(f)
            card.append(_row(name, hook, hook_out, 128, args.d_sae, ev))
            continue
        print(f"{name}: reading activations", flush=True)
        x, xh = activations(model, tr, layer, k_in), activations(model, ho, layer, k_in)
        y, yh = (x, xh) if kind == "sae" else (activations(model, tr, layer, k_out),
                                               activations(model, ho, layer, k_out))
        t = train(x, y, args.d_sae, steps=args.steps, l1=l1, apply_b_dec=kind == "sae", seed=layer)
        ev = {**evaluate(t, xh, yh, kind == "sae"), "training_tokens": int(len(x)), "steps": args.steps,
              "l1": l1, "torch": torch.__version__}
        path = os.path.join(args.out, name)
        save_sae_dir(path, cfg_for(kind, x.shape[1], args.d_sae, y.shape[1], hook, hook_out), t)
        with open(os.path.join(path, "training.json"), "w", encoding="utf-8") as f:
            json.dump(ev, f, indent=1)
        card.append(_row(name, hook, hook_out, x.shape[1], args.d_sae, ev))
        print(name, ev)
    with open(os.path.join(args.out, "SAE_CARD.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(card) + "\n\nNumbers on held-out tokens (BOS excluded). L0: latents active per token.\n")


if __name__ == "__main__":
    main()
