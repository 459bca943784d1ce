"""Neuroscope site benchmark: time to build the site of a whole layer relative to the scan that fed it (same
process, so the ratio is what holds on a noisy machine), and neuron page sizes.

    python bench/bench_neuroscope.py                  # tiny LM, 400 standard-library documents, layer 0
    python bench/bench_neuroscope.py --docs 1000 --layer 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_scan import stdlib_corpus  # noqa: E402


def main() -> None:
    import mri_lens as ml

    p = argparse.ArgumentParser()
    p.add_argument("--docs", type=int, default=400)
    p.add_argument("--layer", type=int, default=0)
    p.add_argument("--k", type=int, default=20)
    args = p.parse_args()

    model = ml.models.tiny_lm(device="cpu")
    corpus = stdlib_corpus(args.docs)
    ml.scan(model, corpus.subset(range(8)), progress=False)  # warm-up
    t0 = time.perf_counter()
    scan = ml.scan(model, corpus, batch_size=32, pooling=("mean", "max"), top_k=args.k, progress=False)
    t_scan = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        ml.neuroscope.site(scan, model, out, layers=[args.layer], k=args.k)
        t_site = time.perf_counter() - t0
        pages = [os.path.join(out, f"L{args.layer}", f) for f in os.listdir(os.path.join(out, f"L{args.layer}"))
                 if f.startswith("N")]
        sizes = [os.path.getsize(f) for f in pages]
        total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs)
    print("| model | docs | tokens | layers scanned | site layer | neuron pages | k | scan s | site s | "
          "site / scan | median page KB | max page KB | site total MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| tiny_lm | {scan.n_docs} | {scan.stats.count} | {scan.n_layers} | {args.layer} | {len(pages)} | "
          f"{args.k} | {t_scan:.2f} | {t_site:.2f} | {t_site / t_scan:.2f} | {statistics.median(sizes) / 1024:.1f} | "
          f"{max(sizes) / 1024:.1f} | {total / 2**20:.1f} |")


if __name__ == "__main__":
    main()
