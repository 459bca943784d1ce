"""N2G held-out scores on the tiny LM: the default configuration against token and 5-gram lookup, every score.

    python bench/bench_n2g_heldout.py --seed 0 --neurons 16
    python bench/bench_n2g_heldout.py --seed 0 --paper      # the paper's preset instead of the default

Protocol (bench_n2g.py's): a scan of 600 standard-library documents (top 20 examples per neuron); per layer,
``--neurons`` random live neurons drawn with ``--seed``; per neuron 10 top examples train and 10 are held out, plus
10 random documents (not among its top 20) for the simulation correlation, and detection contexts: 5 quantile bands
of the scan's per-document max x 2 documents plus 10 documents below a tenth of the neuron's max (none among its top
20), with the held-out top examples. The fallback variants (``N2GConfig(fallback="token" | "mean")``) change only
what uncovered tokens predict, so they are scored on the same fitted graphs: the fallback is fitted on the
training examples as fitting does, then every score is recomputed on the same held-out texts.
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

COLS = ("firing_precision", "firing_recall", "firing_f1", "correlation", "detection_balanced_accuracy",
        "detection_auc")


def f(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def rescore(graphs, scan, tiny, layer, kind):
    """Every graph's scores with a ``kind`` fallback fitted on its training examples (same held-out texts)."""
    from mri_lens.lenses.n2g.evaluate import score_activations
    from mri_lens.lenses.n2g.explain import scan_text
    from mri_lens.lenses.n2g.fallback import fit_fallback
    from mri_lens.lenses.n2g.fit import Forward
    from mri_lens.model.adapter import as_adapter
    from mri_lens.model.capture import get_backend

    adapter = as_adapter(tiny)
    run = Forward(adapter, get_backend(adapter), layer, share_prefixes=True)
    width = int(scan.meta.get("max_length") or adapter.n_ctx)
    out = {}
    for n, g in graphs.items():
        train = [tuple(t) for t in g.examples["train"]]
        test = [tuple(t) for t in g.examples["test"]]
        rand = [r for r in (scan_text(scan, d, adapter.n_special_prefix, width) for d in g.examples["random_docs"])
                if r]
        det = [c for c in (scan_text(scan, d, adapter.n_special_prefix, width) for d in g.examples["detection_docs"])
               if c]
        acts = run([(s, n) for s in train + test + rand + det])
        a, b, c = len(train), len(train) + len(test), len(train) + len(test) + len(rand)
        lens = [len(t) for t in train]
        ids = np.concatenate([np.asarray(t) for t in train])
        starts = np.repeat(np.cumsum([0] + lens[:-1]), lens)
        true = np.concatenate(acts[:a]) / g.max_activation
        saved = g.fallback
        g.fallback = fit_fallback(kind, ids, g.trie.match(ids, starts)[1], true)
        out[n], _ = score_activations(g, test, acts[a:b], rand, acts[b:c], train, acts[:a], test + det,
                                      acts[a:b] + acts[c:])
        g.fallback = saved
    return out


def mean(vals):
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def main(argv=None) -> int:
    import mri_lens as ml

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=600)
    p.add_argument("--neurons", type=int, default=16, help="random live neurons per layer")
    p.add_argument("--live", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paper", action="store_true", help="fit with N2GConfig.paper() instead of the default")
    p.add_argument("--layers", default=None, help="comma-separated layers (default: all)")
    p.add_argument("--scan", default=None, help="a saved scan of the corpus to reuse (written there when missing)")
    args = p.parse_args(argv)

    tiny = ml.models.tiny_lm(device="cpu")
    t0 = time.perf_counter()
    scan = stdlib_scan(ml, tiny, args.docs, args.scan, top_k=20)
    print(f"{scan!r}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    layers = [int(x) for x in args.layers.split(",")] if args.layers else list(scan.layers)
    cfg = ml.n2g.N2GConfig.paper() if args.paper else ml.n2g.N2GConfig()
    print(f"config: {'N2GConfig.paper()' if args.paper else 'N2GConfig()'}; seed {args.seed}; "
          f"{args.neurons} neurons per layer", flush=True)
    rows, variants, costs = [], {"token": [], "mean": []}, []
    for layer in layers:
        li = scan.layer_index(layer)
        live = np.flatnonzero((scan.top.values[li, :, 0] > args.live) & (scan.top.docs[li, :, 19] >= 0))
        rng = np.random.default_rng([args.seed, layer])
        picks = sorted(int(n) for n in rng.choice(live, size=min(args.neurons, len(live)), replace=False))
        t1 = time.perf_counter()
        graphs = ml.n2g.explain_layer(tiny, scan, layer, picks, k=20, config=cfg, seed=args.seed, progress=False)
        secs = time.perf_counter() - t1
        rows.append(graphs.table().iloc[0].to_dict())
        c = graphs.cost
        costs.append((layer, c["neurons_fitted"], c["fit_forward_calls"] / c["neurons_fitted"],
                      c["fit_tokens"] / c["neurons_fitted"], c["neurons_fitted"] / secs))
        for kind in variants:
            sc = rescore(graphs, scan, tiny, layer, kind)
            variants[kind].append((layer, {k: mean(s["n2g"][k] for s in sc.values()) for k in COLS}))
        r = rows[-1]
        print(f"layer {layer} done in {secs:.0f} s: " + "; ".join(
            f"{m} " + " ".join(f(r[f'{m}_{k}']) for k in COLS) for m in ("n2g", "token", "ngram")) + "; fallbacks "
            + "; ".join(f"{kind} " + " ".join(f(variants[kind][-1][1][k]) for k in COLS) for kind in variants)
            + f"; losing {int(r['loses_to_token_lookup'])}", flush=True)

    print("\n| layer | neurons | explainer | firing P | firing R | firing F1 | simulation corr | detection bal. acc. "
          "| detection AUC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for m, name in (("n2g", "N2G"), ("token", "token lookup"), ("ngram", "5-gram lookup")):
            vals = " | ".join(f(r[f"{m}_{k}"]) for k in COLS)
            print(f"| {int(r['layer'])} | {int(r['neurons'])} | {name} | {vals} |")
    print("\n| layer | neurons losing to token lookup (firing F1) | neurons with no firing held-out token |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {int(r['layer'])} | {int(r['loses_to_token_lookup'])} of {int(r['neurons'])} | "
              f"{int(r['no_firing_test_token'])} |")
    print("\nFallback variants (N2G's scores on the same fitted graphs):\n")
    print("| layer | fallback | firing P | firing R | firing F1 | simulation corr | detection bal. acc. | "
          "detection AUC |")
    print("|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows):
        print(f"| {int(r['layer'])} | none | " + " | ".join(f(r[f'n2g_{k}']) for k in COLS) + " |")
        for kind in variants:
            print(f"| {int(r['layer'])} | {kind} | " + " | ".join(f(variants[kind][i][1][k]) for k in COLS) + " |")
    print("\n| layer | fit forward calls / neuron | fit tokens / neuron | neurons / s (fit + eval) |")
    print("|---|---|---|---|")
    for layer, n, fc, ft, nps in costs:
        print(f"| {layer} | {fc:.2f} | {ft:,.0f} | {nps:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
