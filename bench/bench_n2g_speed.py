"""N2G speed: ``explain_layer`` with the default configuration and evaluation on many neurons of one layer.

    python bench/bench_n2g_speed.py --layer 1 --neurons 256
    python bench/bench_n2g_speed.py --layer 1 --neurons 64 --paper     # the paper's preset, for comparison

Reports neurons per second (wall time of fit + evaluation), forward calls and tokens per neuron (fit and
evaluation), the forward tokens per second this machine reached, and a projection for one gpt2-small layer (3,072
neurons) on one GPU: the tiny LM's measured tokens per neuron times gpt2-small's forward FLOPs per token up to the
layer, over an assumed sustained GPU rate (``--gpu-tflops``, stated with the result; no GPU was measured).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from cached_scan import stdlib_scan

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# gpt2-small: 12 blocks of d_model 768, d_mlp 3072; per token and block 2 * (4 * 768^2 + 2 * 768 * 3072) FLOPs
# in its matrix products (attention scores over ~30-token windows are negligible beside them).
GPT2_BLOCK_FLOPS = 2 * (4 * 768 ** 2 + 2 * 768 * 3072)
GPT2_NEURONS = 3072


def main(argv=None) -> int:
    import torch

    import mri_lens as ml

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=600)
    p.add_argument("--layer", type=int, default=1)
    p.add_argument("--neurons", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=64)
    p.add_argument("--paper", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--scan", default=None, help="a saved scan of the corpus to reuse (written there when missing)")
    p.add_argument("--gpu-layer", type=int, default=6, help="gpt2-small layer of the projection")
    p.add_argument("--gpu-tflops", type=float, default=20.0,
                   help="assumed sustained forward TFLOP/s of one GPU on short N2G sequences")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    tiny = ml.models.tiny_lm(device="cpu")
    t0 = time.perf_counter()
    scan = stdlib_scan(ml, tiny, args.docs, args.scan, top_k=20)
    print(f"{scan!r}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    li = scan.layer_index(args.layer)
    live = np.flatnonzero((scan.top.values[li, :, 0] > 0.25) & (scan.top.docs[li, :, 19] >= 0))
    rng = np.random.default_rng([args.seed, args.layer])
    picks = sorted(int(n) for n in rng.choice(live, size=min(args.neurons, len(live)), replace=False))
    cfg = ml.n2g.N2GConfig.paper() if args.paper else ml.n2g.N2GConfig()
    t1 = time.perf_counter()
    graphs = ml.n2g.explain_layer(tiny, scan, args.layer, picks, config=cfg, seed=args.seed,
                                  chunk_size=args.chunk_size, progress=False)
    secs = time.perf_counter() - t1
    c, n = graphs.cost, graphs.cost["neurons_fitted"]
    tokens = c["fit_padded_tokens"] + c["eval_padded_tokens"]
    per_neuron = tokens / n
    flops = per_neuron * GPT2_BLOCK_FLOPS * (args.gpu_layer + 1)
    gpu_s = flops * GPT2_NEURONS / (args.gpu_tflops * 1e12)
    print(f"\nconfig {'paper' if args.paper else 'default'}; layer {args.layer}; {n} neurons of {len(live)} live; "
          f"{torch.get_num_threads()} threads; chunks of {args.chunk_size}\n")
    print("| neurons | seconds | neurons / s | fit forward calls / neuron | fit tokens / neuron | "
          "eval forward calls / neuron | eval tokens / neuron | forward tokens / s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {n} | {secs:.0f} | {n / secs:.2f} | {c['fit_forward_calls'] / n:.2f} | {c['fit_tokens'] / n:,.0f} | "
          f"{c['eval_forward_calls'] / n:.2f} | {c['eval_tokens'] / n:,.0f} | {tokens / secs:,.0f} |")
    print(f"\nprojection: gpt2-small layer {args.gpu_layer}, {GPT2_NEURONS} neurons, {per_neuron:,.0f} padded tokens "
          f"per neuron (this run's), {flops / 1e9:.1f} GFLOP per neuron, at {args.gpu_tflops:g} TFLOP/s sustained: "
          f"{gpu_s / 60:.1f} min per layer ({GPT2_NEURONS / gpu_s:.1f} neurons / s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
