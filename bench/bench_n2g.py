"""N2G benchmark on the tiny LM: N2G vs token lookup vs n-gram lookup, every layer, plus cost per neuron.

    python bench/bench_n2g.py                      # 600 stdlib documents, 32 random live neurons per layer
    python bench/bench_n2g.py --pivots 1,10        # also the extension with extra pivots per example
    python bench/bench_n2g.py --configs 1:firing,10:calibrated   # pivots_per_example:end_values pairs
    python bench/bench_n2g.py --configs 40:calibrated:all:20     # ...:augment_pivots:n_substitutes
    python bench/bench_n2g.py --configs 20:calibrated:main:10:probe   # ...:augmenter (embedding, probe, none)

Protocol: a scan of standard-library code (top 20 examples per neuron); per neuron, 10 top examples train and the
other 10 are held out, plus 10 random documents (not among its top 20) for the pooled correlation. A neuron is live
when its top activation is above ``--live`` (default 0.25); the neurons are drawn with ``--seed``. Scores are means
over neurons with a defined value; neurons with no firing held-out token are counted. Costs are counted (forward
calls and tokens of the fits, pooled across the neurons of a layer by ``explain_layer``); neurons per minute is
wall time of ``explain_layer`` (fit + evaluation) on CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def f(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def main(argv=None) -> int:
    import torch

    import mri_lens as ml
    from mri_lens.lenses.n2g.evaluate import evaluation_of

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=600)
    p.add_argument("--neurons", type=int, default=32, help="random live neurons per layer")
    p.add_argument("--live", type=float, default=0.25, help="a neuron is live when its top activation is above this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pivots", default="1", help="comma-separated pivots_per_example values (1 = the paper)")
    p.add_argument("--configs", default=None,
                   help="comma-separated pivots_per_example:end_values pairs (overrides --pivots), e.g. "
                        "1:firing,10:calibrated")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    tiny = ml.models.tiny_lm(device="cpu")
    t0 = time.perf_counter()
    scan = ml.scan(tiny, ml.datasets.stdlib_code(n_docs=args.docs), overflow="windows", top_k=20, progress=False)
    print(f"{scan!r}  ({time.perf_counter() - t0:.1f} s)")
    picks = {}
    for layer in scan.layers:
        li = scan.layer_index(layer)
        live = np.flatnonzero((scan.top.values[li, :, 0] > args.live) & (scan.top.docs[li, :, 19] >= 0))
        rng = np.random.default_rng([args.seed, layer])
        picks[layer] = sorted(int(n) for n in rng.choice(live, size=min(args.neurons, len(live)), replace=False))
        print(f"layer {layer}: {len(live)} live neurons of {scan.d_mlp}; {len(picks[layer])} drawn")

    if args.configs:
        configs = []
        for c in args.configs.split(","):
            parts = c.split(":") + [None, None, None]
            configs.append((int(parts[0]), parts[1], parts[2] or "main", int(parts[3] or 5), parts[4] or "embedding"))
    else:
        configs = [(int(x), "firing", "main", 5, "embedding") for x in args.pivots.split(",")]
    for pivots, end_values, augment_pivots, n_subs, augmenter in configs:
        cfg = ml.n2g.N2GConfig.paper(pivots_per_example=pivots, end_values=end_values,
                                     augment_pivots=augment_pivots, n_substitutes=n_subs)
        rows, costs, shape = [], [], []
        for layer in scan.layers:
            t1 = time.perf_counter()
            graphs = ml.n2g.explain_layer(tiny, scan, layer, picks[layer], k=20, config=cfg, seed=args.seed,
                                          progress=False, augmenter=augmenter)
            secs = time.perf_counter() - t1
            table = graphs.table()
            rows.append(table.iloc[0].to_dict())
            paths = [lab for g in graphs.values() for lab, _ in g.trie.paths()]
            evs = [evaluation_of(g) for g in graphs.values() if g.scores]
            dens = [e["n_firing_test_tokens"] / e["n_test_tokens"] for e in evs]
            shape.append((layer, float(np.mean([len(lab) > 1 for lab in paths])) if paths else float("nan"),
                          float(np.mean(dens)) if dens else float("nan")))
            c = graphs.cost
            n = c["neurons_fitted"]
            costs.append((layer, n, c["fit_forward_calls"] / n, c["fit_tokens"] / n, c["fit_padded_tokens"] / n,
                          c["eval_forward_calls"] / n, c["eval_tokens"] / n, 60 * n / secs, len(graphs.skipped)))
        paper = pivots == 1 and end_values == "firing" and augment_pivots == "main" and n_subs == 5 and \
            augmenter == "embedding"
        print(f"\n### pivots_per_example={pivots}, end_values={end_values}, augment_pivots={augment_pivots}, "
              f"n_substitutes={n_subs}, augmenter={augmenter}{' (the paper)' if paper else ''}\n")
        print("| layer | neurons | no firing test token | N2G firing P | N2G firing R | N2G firing F1 | "
              "token firing F1 | 5-gram firing F1 | N2G non-firing F1 | token non-firing F1 | N2G corr | "
              "token corr | 5-gram corr |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {int(r['layer'])} | {int(r['neurons'])} | {int(r['no_firing_test_token'])} | "
                  f"{f(r['n2g_firing_precision'])} | {f(r['n2g_firing_recall'])} | **{f(r['n2g_firing_f1'])}** | "
                  f"{f(r['token_firing_f1'])} | {f(r['ngram_firing_f1'])} | {f(r['n2g_nonfiring_f1'])} | "
                  f"{f(r['token_nonfiring_f1'])} | {f(r['n2g_correlation'])} | {f(r['token_correlation'])} | "
                  f"{f(r['ngram_correlation'])} |")
        print("\n| layer | fit forward calls / neuron | fit tokens / neuron | fit padded tokens / neuron | "
              "eval forward calls / neuron | eval tokens / neuron | neurons / minute (fit + eval, CPU) |")
        print("|---|---|---|---|---|---|---|")
        for layer, n, fc, ft, fp, ec, et, npm, _ in costs:
            print(f"| {layer} | {fc:.2f} | {ft:,.0f} | {fp:,.0f} | {ec:.2f} | {et:,.0f} | {npm:.0f} |")
        print("\n| layer | share of N2G paths with any important context token | share of held-out top-example "
              "tokens that fire |")
        print("|---|---|---|")
        for layer, ctx, dens in shape:
            print(f"| {layer} | {ctx:.3f} | {dens:.3f} |")
        better = [r["n2g_firing_f1"] > r["token_firing_f1"] for r in rows]
        print(f"\nN2G firing F1 above token lookup on {sum(better)} of {len(rows)} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
