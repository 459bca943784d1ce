"""MRI lens benchmarks: region maps in parallel vs sequential, seed variability, and the demo's MRI pipeline.

    python bench/bench_mri.py              # all sections
    python bench/bench_mri.py maps seeds   # some of them

Sections
--------
maps     RegionMaps.fit on the MiniLM-L6 scan of the 889 positive/negative drug reviews (6 layers x 1536
         neurons), n_jobs=1 (sequential) against n_jobs=2 (one worker process per core), each run `--rounds` times
         interleaved in this process after a warm-up of both (so both pay umap's JIT compilation once, before
         timing); minimum kept. Also the cold first call of each, in fresh worker processes.
seeds    The same maps with seeds 0, 1, 2: agreement of the neurons' region assignments between seeds (adjusted
         Rand index per layer), regions enriched for each category (Fisher, BH q < 0.05), probe accuracy.
all979   scan + region maps + graph on all 979 reviews (positive / negative / neutral: three categories), in this
         process, the "hf" backend.
pipeline `mri-lens demo` in a subprocess (a fresh process, as a user runs it); its printed split of scan, region
         maps and graph.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

import mri_lens as ml


def reviews_scan():
    corpus = ml.datasets.drug_reviews(label="rating", categories=["positive", "negative"])
    model = ml.models.minilm(device="cpu", backend="hf")
    t = time.perf_counter()
    scan = ml.scan(model, corpus, pooling=("mean", "max"), progress=False)
    print(f"scan of {scan.n_docs} reviews: {time.perf_counter() - t:.1f} s")
    return scan


def bench_maps(scan, rounds: int) -> None:
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # cold: fresh workers
    t = time.perf_counter()
    ml.mri.RegionMaps.fit(scan, grid=10, seed=0, n_jobs=2)
    cold_par = time.perf_counter() - t
    t = time.perf_counter()
    ml.mri.RegionMaps.fit(scan, grid=10, seed=0, n_jobs=1)
    cold_seq = time.perf_counter() - t  # includes this process's own compilation
    times: dict[str, list[float]] = {"sequential": [], "parallel": []}
    ref = None
    for _ in range(rounds):
        for name, n_jobs in (("sequential", 1), ("parallel", 2)):
            t = time.perf_counter()
            m = ml.mri.RegionMaps.fit(scan, grid=10, seed=0, n_jobs=n_jobs)
            times[name].append(time.perf_counter() - t)
            if ref is None:
                ref = m
            assert np.array_equal(m.coords_, ref.coords_), "parallel and sequential maps differ"
    seq, par = min(times["sequential"]), min(times["parallel"])
    print("\n| layers x neurons | docs | sequential s | parallel (2 workers) s | speed-up | cold sequential s | "
          "cold parallel s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {len(ref.layers)} x {scan.d_mlp} | {scan.n_docs} | {seq:.2f} | {par:.2f} | **{seq / par:.2f}x** | "
          f"{cold_seq:.2f} | {cold_par:.2f} |")
    print("(maps identical across n_jobs: checked)")


def bench_seeds(scan) -> None:
    from sklearn.metrics import adjusted_rand_score

    maps = [ml.mri.RegionMaps.fit(scan, grid=10, seed=s, n_jobs=2) for s in (0, 1, 2)]
    print("\n| seed pair | ARI of neuron -> region, per layer | mean |")
    print("|---|---|---|")
    for i, j in ((0, 1), (0, 2), (1, 2)):
        ari = [adjusted_rand_score(maps[i].cell_[k], maps[j].cell_[k]) for k in range(len(maps[i].layers))]
        print(f"| {i} vs {j} | {' / '.join(f'{a:.2f}' for a in ari)} | {np.mean(ari):.2f} |")
    print("\n| seed | regions enriched for positive | for negative | edges enriched (pos + neg) | probe regions "
          "(mean over layers) | probe neurons |")
    print("|---|---|---|---|---|---|")
    for s, m in enumerate(maps):
        g = ml.mri.coactivation_graph(m, min_weight=5, top_edges=3)
        cmp = ml.mri.compare_categories(m, g, "positive", "negative")
        probe = ml.mri.separability(m, scan, seed=0)
        sm = cmp.summary
        print(f"| {s} | {sm['regions_enriched_a']} | {sm['regions_enriched_b']} | "
              f"{sm['edges_enriched_a']} + {sm['edges_enriched_b']} | {probe['regions'].mean():.3f} | "
              f"{probe['neurons'].mean():.3f} |")


def bench_all979() -> None:
    corpus = ml.datasets.drug_reviews(label="rating")
    model = ml.models.minilm(device="cpu", backend="hf")
    t0 = time.perf_counter()
    scan = ml.scan(model, corpus, pooling=("mean", "max"), progress=False)
    t1 = time.perf_counter()
    maps = ml.mri.RegionMaps.fit(scan, grid=10, seed=0)
    t2 = time.perf_counter()
    g = ml.mri.coactivation_graph(maps, min_weight=5, top_edges=3, enrichment=True)
    t3 = time.perf_counter()
    print("\n| corpus | docs | categories | scan s | region maps s | graph s | total s | edges |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| all drug reviews | {scan.n_docs} | {len(scan.label_names)} | {t1 - t0:.1f} | {t2 - t1:.1f} | "
          f"{t3 - t2:.2f} | {t3 - t0:.1f} | {g.number_of_edges()} |")


def bench_pipeline() -> None:
    out = tempfile.mkdtemp(prefix="mri-demo-")
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "mri_lens.cli", "demo", "--out", out, "--quiet"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    total = time.perf_counter() - t
    if res.returncode != 0:
        print(res.stdout[-3000:], res.stderr[-3000:])
        raise SystemExit("demo failed")
    line = next(l for l in res.stdout.splitlines() if l.startswith("MRI pipeline"))
    nums = [float(x) for x in re.findall(r"[\d.]+", line.split(":", 1)[1])]
    print("\n| demo stage | seconds |")
    print("|---|---|")
    for name, v in zip(("scan + region maps + graph", "scan (889 reviews)", "region maps (6 layers)", "graph"), nums):
        print(f"| {name} | {v:.2f} |")
    print(f"| whole demo process (also probe, reports, Neuroscope, N2G) | {total:.1f} |")
    print(f"LLM-MRI 0.2.1's own pipeline on the same corpus on this kind of machine: ~185 s (issue's measurement); "
          f"ratio {185 / nums[0]:.1f}x")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("sections", nargs="*", default=["maps", "seeds", "all979", "pipeline"])
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    scan = reviews_scan() if {"maps", "seeds"} & set(args.sections) else None
    if "maps" in args.sections:
        bench_maps(scan, args.rounds)
    if "seeds" in args.sections:
        bench_seeds(scan)
    if "all979" in args.sections:
        bench_all979()
    if "pipeline" in args.sections:
        bench_pipeline()


if __name__ == "__main__":
    main()
