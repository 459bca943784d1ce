"""The weights fingerprint's cost: a full SHA-256 of every byte against a seeded sample of every tensor, measured on
GPT-J-6B-shaped tensors held in memory and projected to the whole model.

    python bench/bench_fingerprint.py [--layers 6] [--dtype float16] [--rounds 3]

The tensors are GPT-J-6B's own shapes (d_model 4096, d_mlp 16384, vocabulary 50400): the token embedding and
``--layers`` of its 28 blocks, filled with seeded random values, as one ``torch.nn.Module``; that is what the
fingerprint reads once a model is loaded (the load itself already read every byte from disk). Each row is the
minimum over ``--rounds``. The projection to 6.05B parameters divides the model's bytes by the measured
throughput: a projection, not a measurement of the whole model. A CUDA row runs when a GPU is present (the same
tensors on the GPU: host copies in chunks, then the hash).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

GPTJ_PARAMS = 6_053_381_344  # GPT-J-6B's parameter count (its model card)
D_MODEL, D_MLP, VOCAB = 4096, 16384, 50400
SAMPLE_BLOCKS, BLOCK_BYTES, ROW_STRETCH = 16, 4096, 16  # the sample: random blocks + a stretch of every row


def gptj_like(n_layers: int, dtype):
    """A module with GPT-J-6B's embedding and ``n_layers`` of its blocks (seeded random values)."""
    import torch

    g = torch.Generator().manual_seed(0)

    def p(*shape):
        return torch.nn.Parameter(torch.randn(*shape, generator=g, dtype=torch.float32).to(dtype),
                                  requires_grad=False)

    m = torch.nn.Module()
    m.wte = torch.nn.Module()
    m.wte.weight = p(VOCAB, D_MODEL)
    m.h = torch.nn.ModuleList()
    for _ in range(n_layers):
        b = torch.nn.Module()
        b.ln_1_weight, b.ln_1_bias = p(D_MODEL), p(D_MODEL)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(b, name, p(D_MODEL, D_MODEL))
        b.fc_in_weight, b.fc_in_bias = p(D_MLP, D_MODEL), p(D_MLP)
        b.fc_out_weight, b.fc_out_bias = p(D_MODEL, D_MLP), p(D_MODEL)
        m.h.append(b)
    return m


def sampled_fingerprint(model) -> tuple[str, int]:
    """The alternative: per tensor, ``SAMPLE_BLOCKS`` seeded blocks of ``BLOCK_BYTES`` plus ``ROW_STRETCH``
    consecutive values of every row at a seeded column. Returns (digest, bytes read)."""
    import torch

    from mri_lens.model.fingerprint import named_weights

    h, read = hashlib.sha256(), 0
    for name, t in named_weights(model):
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little"))
        flat = t.detach().reshape(-1).view(torch.uint8)
        n = flat.numel()
        starts = rng.integers(0, max(n - BLOCK_BYTES, 1), size=SAMPLE_BLOCKS)
        for s in np.sort(starts):
            h.update(flat[int(s):int(s) + BLOCK_BYTES].cpu().numpy().tobytes())
            read += min(BLOCK_BYTES, n)
        if t.dim() == 2:
            cols = rng.integers(0, max(t.shape[1] - ROW_STRETCH, 1), size=t.shape[0])
            idx = torch.as_tensor(cols)[:, None] + torch.arange(min(ROW_STRETCH, t.shape[1]))[None, :]
            rows = torch.gather(t.detach(), 1, idx.to(t.device))
            buf = rows.contiguous().view(torch.uint8).cpu().numpy()
            h.update(buf.tobytes())
            read += buf.nbytes
    return h.hexdigest(), read


def _time(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    import torch

    from mri_lens.model.fingerprint import named_weights, weights_fingerprint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    model = gptj_like(args.layers, dtype)
    weights = named_weights(model)
    nbytes = sum(t.numel() * t.element_size() for _, t in weights)
    nparams = sum(t.numel() for _, t in weights)
    cpus = os.cpu_count() or 1
    print(f"{len(weights)} tensors, {nparams / 1e9:.2f}B parameters, {nbytes / 2**30:.2f} GiB {args.dtype}; "
          f"{cpus} CPUs; torch {torch.__version__}")
    rows = []

    def blake_one_thread():
        for _, t in weights:
            hashlib.blake2b(memoryview(t.detach().reshape(-1).view(torch.uint8).numpy())).hexdigest()

    for label, fn in [(f"full SHA-256, {t} thread{'s' * (t > 1)}", (lambda t=t: weights_fingerprint(model, threads=t)))
                      for t in sorted({1, min(8, cpus)})] + [("full BLAKE2b, 1 thread", blake_one_thread)]:
        s = _time(fn, args.rounds)
        rows.append((label, "host", s, nbytes))
    _, sample_read = sampled_fingerprint(model)
    rows.append(("sample (16 x 4 KiB blocks + 16 values of every row per tensor)", "host",
                 _time(lambda: sampled_fingerprint(model), args.rounds), sample_read))
    if torch.cuda.is_available():
        model.to("cuda")
        torch.cuda.synchronize()
        rows.append((f"full SHA-256, {min(8, cpus)} threads, tensors on the GPU", "cuda",
                     _time(lambda: weights_fingerprint(model), args.rounds), nbytes))
    scale = GPTJ_PARAMS / nparams
    gptj_gib = GPTJ_PARAMS * weights[0][1].element_size() / 2**30
    print(f"\n| method | tensors on | seconds (min of {args.rounds}) | bytes read | model GiB/s | projected GPT-J-6B "
          f"seconds, {args.dtype} ({gptj_gib:.1f} GiB) |\n|---|---|---|---|---|---|")
    for label, where, s, read in rows:
        print(f"| {label} | {where} | {s:.3f} | {read / 2**30:.3g} GiB | {nbytes / s / 2**30:.2f} | {s * scale:.1f} |")
    print(f"\nthe sample reads {sample_read / nbytes:.2e} of the bytes; projection: x{scale:.2f} the measured seconds "
          "(GPT-J-6B's parameters / these)")

if __name__ == "__main__":
    main()
