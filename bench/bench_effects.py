"""Effects benchmark on the tiny LM: what ablation, steering and attribution patching cost against a bare forward of
the same model object on the same batches, run side by side in one process; and how well attribution patching
ranks the neurons of each layer against exact ablation (Spearman).

    python bench/bench_effects.py                         # TransformerLens (the installed version), 16 documents
    python bench/bench_effects.py --backend hf            # the Hugging Face backend
    python bench/bench_effects.py --docs 32 --max-length 128 --repeats 3

Protocol: ``--docs`` standard-library documents, each cut to ``--max-length`` tokens (the model's context when
omitted), batches of ``--batch-size``. A bare forward is the model's own forward with no hook (TransformerLens:
``model(tokens, attention_mask=mask)``; Hugging Face: the base model and the tied unembedding), in inference mode,
over the same batches. Each timed step is repeated ``--repeats`` times, interleaved with the bare forward, and the
minimum is kept. Per neuron: ``ml.effects.ablate`` of one neuron (a clean and an edited forward per batch plus the
per-token table), and ``ml.effects.ablate_each`` over a whole layer divided by ``d_mlp``. Per layer:
``ml.effects.attribution`` (a forward and a backward per batch, every neuron at once) and ``ablate_each``.
The exact cost per neuron is timed on ``ablate_each`` of the first ``--sample`` neurons (repeated like the
others); the whole layer's exact ablation runs once (its wall time, and the ranking that Spearman compares).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _bare(adapter, batches):
    """A bare forward over every batch: the model's own forward, no hooks, logits out."""
    import torch

    model = adapter.model
    with torch.inference_mode():
        for tokens, mask in batches:
            if adapter.is_hf:
                hidden = model.model(input_ids=tokens, attention_mask=mask).last_hidden_state
                _ = hidden @ adapter.unembedding()
            else:
                model(tokens, attention_mask=mask)


def _timed(fn, repeats: int, bare) -> tuple[float, float]:
    """``(min seconds of fn, min seconds of the bare forward)``, the two interleaved ``repeats`` times."""
    t_fn, t_bare = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        bare()
        t_bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fn()
        t_fn.append(time.perf_counter() - t0)
    return min(t_fn), min(t_bare)


def main(argv=None) -> int:
    import torch
    from scipy.stats import spearmanr

    import mri_lens as ml
    from mri_lens.model import as_adapter

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="transformer_lens", choices=["transformer_lens", "hf"])
    p.add_argument("--docs", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sample", type=int, default=64, help="neurons of the timed exact-ablation sample")
    p.add_argument("--layers", default=None, help="comma-separated layers (default: every layer)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = ml.models.tiny_lm(device="cpu", backend=args.backend)
    adapter = as_adapter(model)
    texts = ml.datasets.stdlib_code(n_docs=args.docs).texts
    segs, _ = adapter.encode(texts, max_length=args.max_length)
    seqs = sorted((s[0] for s in segs), key=len)
    batches = [adapter.pad_batch(seqs[b:b + args.batch_size])[:2] for b in range(0, len(seqs), args.batch_size)]
    n_tokens = sum(len(s) for s in seqs)
    layers = adapter.check_layers(None if args.layers is None else [int(x) for x in args.layers.split(",")])
    kw = dict(texts=texts, max_length=args.max_length, batch_size=args.batch_size, progress=False)
    bare = lambda: _bare(adapter, batches)  # noqa: E731
    bare()  # warm-up
    print(f"tiny LM ({adapter.family}, torch threads {torch.get_num_threads()}): {len(seqs)} documents, "
          f"{n_tokens} tokens, batches of {args.batch_size}, d_mlp {adapter.d_mlp}, min of {args.repeats}")
    print("| layer | bare forward (s) | ablate 1 neuron (s, x bare) | attribution, whole layer (s, x bare) | "
          "exact, whole layer, once (s, x bare) | exact per neuron (x bare) | exact / attribution per layer | "
          "Spearman |")
    print("|---|---|---|---|---|---|---|---|")
    for layer in layers:
        t_abl, b1 = _timed(lambda: ml.effects.ablate(model, layer, [0], **kw), args.repeats, bare)
        t_att, b2 = _timed(lambda: ml.effects.attribution(model, layer, **kw), args.repeats, bare)
        sample = list(range(args.sample))
        t_smp, b3 = _timed(lambda: ml.effects.ablate_each(model, layer, neurons=sample, **kw), args.repeats, bare)
        t0 = time.perf_counter()
        exact = ml.effects.ablate_each(model, layer, **kw)
        t_ex = time.perf_counter() - t0  # once: it is d_mlp ablations
        t_bare = min(b1, b2, b3)
        att = ml.effects.attribution(model, layer, **kw)
        rho = spearmanr(att.scores, exact.scores).correlation
        per_neuron = t_smp / args.sample
        print(f"| {layer} | {t_bare:.3f} | {t_abl:.3f} ({t_abl / t_bare:.1f}x) | {t_att:.3f} ({t_att / t_bare:.1f}x) "
              f"| {t_ex:.1f} ({t_ex / t_bare:.0f}x) | {per_neuron / t_bare:.2f}x "
              f"| {per_neuron * adapter.d_mlp / t_att:.0f}x | {rho:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
