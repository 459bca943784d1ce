"""Scale benchmarks: out-of-core scans, the Ray engine's scaling and overheads, and projections for large models.

    python bench/bench_scale.py outofcore [--docs 60000]   # pooled values >= 4x the scan's peak memory growth
    python bench/bench_scale.py scaling [--rounds 3]        # Ray: 1 worker vs 2 workers (1 torch thread each)
    python bench/bench_scale.py projection                  # GPT-J-6B / Llama-3-8B from the measured figures

Memory: each measured step runs in a fresh subprocess; its peak is the rise of the kernel's RSS high-water mark
(VmHWM, reset just before the measured call) over the RSS right before it (model loaded, corpus built). Timings
run side by side in one process (ratios are what holds on a noisy machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_scan import _reset_hwm, _status_kb  # noqa: E402 - the memory probes of the scan benchmarks


SHARD_MB = 96  # pooled values per shard in memory: the out-of-core row's stated budget
SCALING_SHARD = 32_000  # counted tokens per shard of the scaling rows (a few seconds of work each on this CPU)


def short_docs(n: int):
    """``n`` short real texts: lines of standard-library sources (5-40 tokens each), unlabelled... and two
    categories (code lines with and without a keyword) so the report's comparison has something to do."""
    import glob
    import sysconfig

    import mri_lens as ml

    root = sysconfig.get_paths()["stdlib"]
    texts = []
    for path in sorted(glob.glob(os.path.join(root, "*.py")) + glob.glob(os.path.join(root, "*", "*.py"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if 12 <= len(line) <= 120:
                    texts.append(line)
        if len(texts) >= n:
            break
    texts = texts[:n]
    labels = ["def" if ("def " in t or "return" in t) else "other" for t in texts]
    return ml.Corpus(texts, labels)


# ---------------------------------------------------------------------------------------------- child steps
def _child(step: str, args: list[str]) -> dict:
    import mri_lens as ml

    if step == "scan":
        n, out = int(args[0]), args[1]
        model = ml.models.tiny_lm(device="cpu")
        corpus = short_docs(n)
        ml.scan(model, corpus.subset(range(64)), progress=False)  # warm up (kernels, allocator)
        base = _status_kb("VmRSS")
        _reset_hwm()
        t0 = time.perf_counter()
        s = ml.scan(model, corpus, batch_size=64, out=out, progress=False, pooling=("mean", "max"),
                    shard_bytes=SHARD_MB << 20)
        seconds = time.perf_counter() - t0
        pooled = s.pooled_.nbytes
        return {"step": "scan", "docs": s.n_docs, "tokens": int(s.stats.count), "shards": s.meta["n_shards"],
                "seconds": round(seconds, 1), "pooled_mb": round(pooled / 2**20, 1),
                "base_rss_mb": round(base / 1024, 1), "peak_rise_mb": round((_status_kb("VmHWM") - base) / 1024, 1)}
    if step == "maps":
        path = args[0]
        s = ml.Scan.load(path)
        base = _status_kb("VmRSS")
        _reset_hwm()
        t0 = time.perf_counter()
        maps = ml.mri.RegionMaps.fit(s, grid=10, seed=0, n_jobs=1)
        seconds = time.perf_counter() - t0
        one_layer = s.n_docs * s.d_mlp * 4
        return {"step": "RegionMaps.fit", "seconds": round(seconds, 1), "layers": len(maps.layers),
                "one_layer_mb": round(one_layer / 2**20, 1), "region_act_mb": round(maps.region_act_.nbytes / 2**20, 1),
                "base_rss_mb": round(base / 1024, 1), "peak_rise_mb": round((_status_kb("VmHWM") - base) / 1024, 1)}
    if step == "report":
        path, page = args[0], args[1]
        from mri_lens.render.report import write_scan_report

        s = ml.Scan.load(path)
        base = _status_kb("VmRSS")
        _reset_hwm()
        t0 = time.perf_counter()
        write_scan_report(s, page, categories=("def", "other"))
        seconds = time.perf_counter() - t0
        return {"step": "scan report", "seconds": round(seconds, 1),
                "base_rss_mb": round(base / 1024, 1), "peak_rise_mb": round((_status_kb("VmHWM") - base) / 1024, 1)}
    raise SystemExit(f"unknown step {step}")


def _run(step: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "_child", step, *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-4000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def outofcore(n_docs: int) -> list[dict]:
    work = tempfile.mkdtemp(prefix="mri_lens-bench-")
    try:
        scan_dir = os.path.join(work, "scan")
        rows = [_run("scan", str(n_docs), scan_dir), _run("maps", scan_dir),
                _run("report", scan_dir, os.path.join(work, "report.html"))]
        scan = rows[0]
        ratio = scan["pooled_mb"] / max(scan["peak_rise_mb"], 1e-9)
        print(f"shards of at most {SHARD_MB} MiB of pooled values (shard_bytes); tiny LM, 2 poolings, 4 layers x 512")
        print("| step | documents | tokens | seconds | peak RSS rise (MB) | pooled values on disk (MB) | ratio |")
        print("|---|---|---|---|---|---|---|")
        print(f"| scan to disk ({scan['shards']} shards) | {scan['docs']} | {scan['tokens']} | {scan['seconds']} | "
              f"{scan['peak_rise_mb']} | {scan['pooled_mb']} | **{ratio:.1f}x** |")
        for r in rows[1:]:
            extra = f" (one layer in memory: {r['one_layer_mb']} MB; region activations {r['region_act_mb']} MB)" \
                if "one_layer_mb" in r else ""
            print(f"| {r['step']} on the saved scan{extra} | | | {r['seconds']} | {r['peak_rise_mb']} | | |")
        print(f"pooled / peak growth = {ratio:.1f}x (target >= 4x): {'OK' if ratio >= 4 else 'BELOW'}")
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- scaling
def scaling(rounds: int, n_docs: int) -> dict:
    """One worker vs two on the same plan and shards, each worker one torch (and numba) thread, on one local Ray
    cluster of 2 CPUs. The pools are started and warmed first: the timed part is the shards only; the pool's start
    (actors, model loads) is reported as the fixed overhead."""
    import ray

    import mri_lens as ml
    from mri_lens.model.adapter import as_adapter
    from mri_lens.model.capture import get_backend
    from mri_lens.scanning.histogram import default_histogram_edges
    from mri_lens.scanning.merge import PartsMerge
    from mri_lens.results.parts import ScanPart
    from mri_lens.scanning.plan import make_plan
    from mri_lens.scanning.ray_engine import actor_pool
    from mri_lens.storage import part_dir_name

    corpus = short_docs(n_docs)
    tiny = ml.models.tiny_lm(device="cpu")
    adapter = as_adapter(tiny)
    options = {"batch_size": 32, "max_batch_tokens": 2048, "max_length": 256, "overflow": "truncate",
               "pooling": ["mean", "max"], "top_k": 20, "dtype": "float32", "include_bos": False,
               "backend": get_backend(adapter).name}
    plan = make_plan(adapter, corpus, layers=list(range(4)), options=options, shard_tokens=SCALING_SHARD)
    edges = default_histogram_edges()
    spec = ml.models.ModelSpec("tiny", device="cpu")
    warm = make_plan(adapter, corpus.subset(range(8)), layers=list(range(4)), options=options)
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t0
    times: dict[int, list[float]] = {1: [], 2: []}
    start: dict[int, float] = {}
    summaries = {}
    work = tempfile.mkdtemp(prefix="mri_lens-bench-")

    def submit_for(p, d):
        return lambda actor, i: actor.run.remote(p.shard(i), p.layers, edges, os.path.join(d, part_dir_name(i)),
                                                 p.hash)
    try:
        for r in range(rounds):  # rounds interleave the two sizes: a slow spell of the machine hits both
            for w in (1, 2):
                t = time.perf_counter()
                with actor_pool(spec, workers=w, threads_per_worker=1) as pool:
                    d = os.path.join(work, f"warm-{r}-{w}")
                    os.makedirs(d)
                    list(pool.map(submit_for(warm, d), [0] * w))  # every actor loaded and its kernels warm
                    start[w] = time.perf_counter() - t
                    d = os.path.join(work, f"r{r}-w{w}")
                    os.makedirs(d)
                    t = time.perf_counter()
                    summaries[w] = list(pool.map(submit_for(plan, d), range(plan.n_shards)))
                    times[w].append(time.perf_counter() - t)
        last = os.path.join(work, f"r{rounds - 1}-w2")
        running = PartsMerge(plan.n_docs, dedup=False)
        t = time.perf_counter()
        for i in range(plan.n_shards):
            running.add(ScanPart.load(os.path.join(last, part_dir_name(i)), plan_hash=plan.hash))
        merge_per_part = (time.perf_counter() - t) / plan.n_shards
        part_bytes = sum(os.path.getsize(os.path.join(root, f))
                         for root, _, fs in os.walk(os.path.join(last, part_dir_name(0))) for f in fs)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    one, two = min(times[1]), min(times[2])
    ratios = [a / b for a, b in zip(times[1], times[2])]
    tokens = sum(plan.shard_tokens(i) for i in range(plan.n_shards))
    print(f"plan: {plan.n_docs} documents, {tokens} tokens, {plan.n_shards} shards of <= {SCALING_SHARD // 1000}k tokens; tiny LM, "
          f"1 torch and numba thread per worker, a local Ray cluster of 2 CPUs (ray.init {t_init:.1f} s)")
    print("| workers | seconds for the shards (min of rounds) | tokens/s | speed-up |")
    print("|---|---|---|---|")
    print(f"| 1 | {one:.1f} | {tokens / one:.0f} | 1.00x |")
    print(f"| 2 | {two:.1f} | {tokens / two:.0f} | **{one / two:.2f}x** (median of rounds {np.median(ratios):.2f}x) |")
    compute = [s["compute_s"] for s in summaries[2]]
    saves = [s["save_s"] for s in summaries[2]]
    print(f"Ray fixed overhead: ray.init {t_init:.1f} s; pool start with model loads and a warm-up task {start[1]:.1f} s "
          f"(1 worker) / {start[2]:.1f} s (2 workers); per shard compute {np.mean(compute):.2f} s, save "
          f"{np.mean(saves) * 1000:.0f} ms; merge {merge_per_part * 1000:.0f} ms per shard (a part on disk: "
          f"{part_bytes / 2**20:.1f} MB, statistics and pooled rows)")
    med = float(np.median(ratios))
    print(f"speed-up target >= 1.7x: median of rounds {med:.2f}x {'OK' if med >= 1.7 else 'BELOW'}, "
          f"per round {', '.join(f'{x:.2f}x' for x in ratios)}")
    return {"one": one, "two": two, "fixed": start[1], "merge_per_part": merge_per_part, "part_bytes": part_bytes,
            "tokens": tokens, "shards": plan.n_shards, "compute": float(np.mean(compute)), "init": t_init}


# ---------------------------------------------------------------------------------------------- projection
MODELS = {"GPT-J-6B": (28, 16384), "Llama-3-8B": (32, 14336), "gpt2-small": (12, 3072), "tiny LM": (4, 512)}


def projection(measured: dict | None = None, *, tokens: float = 100e6, tokens_per_doc: int = 95,
               shard_gib: float = 32.0, gpus: int = 8, top_k: int = 20, poolings: int = 2) -> None:
    """Sizes from the formats (exact) and the merge time from the measured per-element merge cost of the tiny LM.

    A worker holds one shard's pooled values in memory (``shard_bytes``, here ``shard_gib``); that fixes the
    documents per shard, hence the number of shards and their partial statistics on disk."""
    print(f"Projection for {tokens / 1e6:.0f}M tokens in documents of {tokens_per_doc} tokens, {poolings} poolings "
          f"(float32), top/bottom {top_k}, shard_bytes = {shard_gib:g} GiB (a worker's pooled values in memory):")
    print("| model | layers x d_mlp | pooled bytes / document / pooling | documents (tokens) per shard | shards | "
          f"partial statistics per shard | disk for {tokens / 1e6:.0f}M tokens (pooled + statistics) | "
          "merge of the statistics |")
    print("|---|---|---|---|---|---|---|---|")
    docs = tokens / tokens_per_doc
    per_elem_merge = None
    if measured:
        L, d = MODELS["tiny LM"]
        per_elem_merge = measured["merge_per_part"] / (L * d)
    for name, (L, d) in MODELS.items():
        per_doc = L * d * 4
        docs_per_shard = max(1, int(shard_gib * 2 ** 30 // (poolings * per_doc)))
        n_shards = int(np.ceil(docs / docs_per_shard))
        # a part's statistics: mean/std f64, min/max f32, n_positive i64, hist i32 x 116, top+bottom (f32, i64, i64)
        stats = L * d * (8 + 8 + 4 + 4 + 8 + 116 * 4 + 2 * top_k * (4 + 8 + 8))
        disk = poolings * per_doc * docs + n_shards * stats
        merge = f"{per_elem_merge * L * d * n_shards / 60:.1f} min" if per_elem_merge else "n/a"
        print(f"| {name} | {L} x {d} | {per_doc / 2**20:.2f} MiB | {docs_per_shard:,} ({docs_per_shard * tokens_per_doc / 1e6:.2f}M) "
              f"| {n_shards:,} | {stats / 2**30:.2f} GiB | {disk / 2**40:.2f} TiB | {merge} |")
    print(f"Time on {gpus} GPUs: shards are independent (no communication but the parts on shared storage), so the "
          f"scan takes ~ (forward time of {tokens / 1e6:.0f}M tokens on one GPU) / {gpus} + the pool's start + the "
          "merge; the field's reference (top/bottom-100 exemplars of Llama-3.1-8B over 1M x 95 tokens: ~64 h on 2 "
          f"A100s, ~128 GPU-hours) gives ~{128 / gpus:.0f} h on {gpus} A100s, if this scan is forward-bound like it.")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", nargs="?", default="all", choices=("all", "outofcore", "scaling", "projection", "_child"))
    p.add_argument("rest", nargs="*")
    p.add_argument("--docs", type=int, default=60000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--scaling-docs", type=int, default=20000)
    p.add_argument("--merge-ms", type=float, default=None,
                   help="projection alone: the measured merge cost per tiny-LM part (the scaling run prints it)")
    a = p.parse_args()
    if a.what == "_child":
        print(json.dumps(_child(a.rest[0], a.rest[1:])))
        return
    measured = {"merge_per_part": a.merge_ms / 1000} if a.merge_ms else None
    if a.what in ("all", "outofcore"):
        outofcore(a.docs)
    if a.what in ("all", "scaling"):
        measured = scaling(a.rounds, a.scaling_docs)
    if a.what in ("all", "projection"):
        projection(measured)


if __name__ == "__main__":
    main()
