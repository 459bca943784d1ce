"""Scan benchmarks, side by side in one process (ratios are what holds on a noisy machine).

    python bench/bench_scan.py                 # everything
    python bench/bench_scan.py throughput      # scan vs bare forward vs the HF model's own forward
    python bench/bench_scan.py naive           # vs run_with_cache() of every hook, then pool (time + memory)
    python bench/bench_scan.py growth          # peak RSS at N vs 10N tokens

Timings: each contender runs ``--rounds`` times, interleaved, and the minimum is kept; the headline ratio is also
given as the median of the per-round ratios (each round's two timings are seconds apart, so a slow spell of the
machine hits both). Memory: each contender runs
in a fresh subprocess; its peak is the rise of the kernel's RSS high-water mark (VmHWM, reset just before the
measured call) over the RSS after loading and warming up the model.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import sysconfig
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def stdlib_corpus(n_docs: int, chars: int = 900, skip: int = 0):
    """Real text: consecutive chunks of standard-library sources."""
    import mri_lens as ml

    root = sysconfig.get_paths()["stdlib"]
    texts = []
    for path in sorted(glob.glob(os.path.join(root, "*.py")) + glob.glob(os.path.join(root, "*", "*.py"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            src = f.read()
        for i in range(0, len(src) - chars, chars):
            chunk = src[i:i + chars]
            if chunk.strip():
                texts.append(chunk)
        if len(texts) >= n_docs + skip:
            break
    return ml.Corpus(texts[skip:skip + n_docs])


def load(name: str):
    import mri_lens as ml

    return ml.models.tiny_lm(device="cpu") if name == "tiny" else ml.models.minilm(device="cpu")


def corpus_for(name: str, n_docs: int):
    import mri_lens as ml

    if name == "tiny":
        return stdlib_corpus(n_docs)
    c = ml.datasets.drug_reviews()
    return c.subset(range(min(n_docs, len(c))))


def batches_for(model, corpus, batch_size: int):
    from mri_lens.model.adapter import ModelAdapter
    from mri_lens.scanning.batching import plan_batches

    ad = ModelAdapter(model)
    segs, _ = ad.encode(corpus.texts)
    seqs = [s[0] for s in segs]
    lengths = np.array([len(s) for s in seqs])
    # The scan's own batch plan (length-sorted, default token budget), so every contender sees the same batches.
    plan = plan_batches(lengths, batch_size, MAX_BATCH_TOKENS)
    return [ad.pad_batch([seqs[i] for i in b])[:2] for b in plan], int(lengths.sum())


MAX_BATCH_TOKENS = 2048  # the scan's default


def base_hf_model(model):
    """The wrapped Hugging Face model's base (no LM/MLM head), for its own forward."""
    hf = getattr(model, "original_model", None)
    if hf is None:
        return None
    return getattr(hf, hf.base_model_prefix, hf)


def timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def throughput(name: str, n_docs: int, rounds: int, batch_size: int = 32) -> dict:
    import torch

    import mri_lens as ml

    model = load(name)
    corpus = corpus_for(name, n_docs)
    batches, n_tokens = batches_for(model, corpus, batch_size)
    hf = base_hf_model(model)
    # The same weights as a plain transformers model (no TL wrappers): its own forward, and the hf-backend scan.
    plain = ml.load_model(ml.models.tiny_lm_dir() if name == "tiny" else ml.models.minilm_dir(), device="cpu",
                          backend="hf")

    def plain_forward():
        with torch.inference_mode():
            for t, m in batches:
                plain.model(input_ids=t, attention_mask=m)

    def scan_hf():
        ml.scan(plain, corpus, batch_size=batch_size, progress=False)

    def bare():
        with torch.inference_mode():
            for t, m in batches:
                model(t, attention_mask=m, return_type=None)

    def hf_forward():
        with torch.inference_mode():
            for t, m in batches:
                hf(input_ids=t, attention_mask=m)

    def scan():
        ml.scan(model, corpus, batch_size=batch_size, progress=False)

    def capture_only():
        from mri_lens.model.adapter import ModelAdapter
        from mri_lens.model.capture import TransformerLensBackend

        cap = TransformerLensBackend(ModelAdapter(model))
        for t, m in batches:
            cap.forward(t, m, range(model.cfg.n_layers))

    from mri_lens.model import ModelAdapter, get_backend

    hf_cap = get_backend(ModelAdapter(plain))

    def hf_capture_only():  # the hf backend's forward with its hooks, no statistics: what the scan adds is the rest
        for t, m in batches:
            hf_cap.forward(t, m, range(plain.cfg.n_layers), consume=lambda layer, x: None)

    contenders = {"bare_forward": bare, "scan": scan, "capture_only": capture_only,
                  "plain_hf_forward": plain_forward, "scan_hf_backend": scan_hf, "hf_capture_only": hf_capture_only}
    if hf is not None:
        contenders["hf_forward"] = hf_forward
    bare()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for k, f in contenders.items():
            times[k].append(timed(f))
    best = {k: min(v) for k, v in times.items()}
    row = {"model": name, "docs": len(corpus), "tokens": n_tokens, **{f"{k}_s": round(v, 3) for k, v in best.items()},
           "scan_vs_bare": round(best["bare_forward"] / best["scan"], 3),
           "capture_vs_bare": round(best["bare_forward"] / best["capture_only"], 3)}
    if hf is not None:
        row["scan_vs_hf"] = round(best["hf_forward"] / best["scan"], 3)
        row["bare_vs_hf"] = round(best["hf_forward"] / best["bare_forward"], 3)
    row["hf_scan_vs_plain_hf_forward"] = round(best["plain_hf_forward"] / best["scan_hf_backend"], 3)
    row["hf_scan_vs_plain_hf_forward_median"] = round(float(np.median(
        [a / b for a, b in zip(times["plain_hf_forward"], times["scan_hf_backend"])])), 3)
    row["hf_scan_vs_hf_capture_only"] = round(best["hf_capture_only"] / best["scan_hf_backend"], 3)
    row["hf_fused_gelu"] = bool(hf_cap.describe().get("fused_activations"))
    row["bare_vs_plain_hf_forward"] = round(best["plain_hf_forward"] / best["bare_forward"], 3)
    row["hf_scan_vs_tl_scan"] = round(best["scan"] / best["scan_hf_backend"], 3)
    return row


# ---------------------------------------------------------------------- memory (one contender per subprocess)
def _status_kb(field: str) -> int:
    """A memory field of /proc/self/status in kB (VmRSS: now; VmHWM: peak since the last reset)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def naive_pool(model, corpus, batch_size: int = 32):
    """What notebooks often do: run_with_cache() of every hook, keep each document's MLP activations, pool at the
    end (masked mean and max)."""
    import torch

    from mri_lens.model.adapter import ModelAdapter

    from mri_lens.scanning.batching import plan_batches

    ad = ModelAdapter(model)
    segs, _ = ad.encode(corpus.texts)
    seqs = [s[0] for s in segs]
    kept = []
    plan = plan_batches(np.array([len(s) for s in seqs]), batch_size, MAX_BATCH_TOKENS)
    with torch.inference_mode():
        for idx in plan:
            chunk = [seqs[i] for i in idx]
            t, m, _ = ad.pad_batch(chunk)
            _, cache = model.run_with_cache(t, attention_mask=m)
            for j, s in enumerate(chunk):
                kept.append(torch.stack([cache[f"blocks.{l}.mlp.hook_post"][j, 1:len(s)]
                                         for l in range(model.cfg.n_layers)]))
            del cache
    mean = torch.stack([k.mean(1) for k in kept])
    mx = torch.stack([k.amax(1) for k in kept])
    return mean, mx


def memory_child(kind: str, name: str, n_docs: int) -> dict:
    import torch

    import mri_lens as ml

    torch.set_num_threads(2)
    model = load(name)
    corpus = corpus_for(name, n_docs)
    ml.scan(model, corpus.subset(range(8)), progress=False)  # warm-up: allocator, lazy imports
    naive_pool(model, corpus.subset(range(8)))
    base = _status_kb("VmRSS")
    _reset_hwm()
    t0 = time.perf_counter()
    if kind == "scan":
        res = ml.scan(model, corpus, progress=False)
        pooled_bytes = sum(a.nbytes for a in res.pooled_.values())
        n_tokens = int(res.meta["n_input_tokens"])
    elif kind == "bare":
        batches, n_tokens = batches_for(model, corpus, 32)
        with torch.inference_mode():
            for t, m in batches:
                model(t, attention_mask=m, return_type=None)
        pooled_bytes = 0
    else:
        mean, mx = naive_pool(model, corpus)
        pooled_bytes = mean.numel() * 4 + mx.numel() * 4
        n_tokens = None
    secs = time.perf_counter() - t0
    return {"kind": kind, "model": name, "docs": n_docs, "tokens": n_tokens, "seconds": round(secs, 2),
            "base_rss_mb": round(base / 1024, 1), "peak_rise_mb": round((_status_kb("VmHWM") - base) / 1024, 1),
            "pooled_mb": round(pooled_bytes / 2**20, 2)}


def run_child(kind: str, name: str, n_docs: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "_child", kind, name, str(n_docs)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def naive(name: str, n_docs: int) -> list[dict]:
    rows = [run_child("scan", name, n_docs), run_child("naive", name, n_docs), run_child("bare", name, n_docs)]
    s, nv, bare = rows
    print(f"{name}: naive vs scan at {s['tokens']} tokens: time naive/scan = {nv['seconds'] / s['seconds']:.2f}x, "
          f"peak memory naive/scan = {nv['peak_rise_mb'] / max(s['peak_rise_mb'], 0.1):.1f}x "
          f"(a bare forward of the same batches alone peaks at {bare['peak_rise_mb']:.0f} MB)")
    return rows


def growth(n_docs: int) -> list[dict]:
    small, big = run_child("scan", "tiny", n_docs), run_child("scan", "tiny", 10 * n_docs)
    rss_growth = big["peak_rise_mb"] + big["base_rss_mb"] - small["peak_rise_mb"] - small["base_rss_mb"]
    pooled_growth = big["pooled_mb"] - small["pooled_mb"]
    allowed = 1.10 * pooled_growth
    print(f"peak RSS {small['tokens']} -> {big['tokens']} tokens: grew {rss_growth:.1f} MB; pooled arrays grew "
          f"{pooled_growth:.1f} MB; allowed (pooled growth + 10%) {allowed:.1f} MB -> "
          f"{'OK' if rss_growth <= allowed else 'OVER'}")
    return [small, big]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        print(json.dumps(memory_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="*", default=["throughput", "naive", "growth"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--docs", type=int, default=300)
    args = p.parse_args()
    import torch

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    if "throughput" in args.what:
        for name in ("tiny", "minilm"):
            row = throughput(name, args.docs, args.rounds)
            print(json.dumps(row))
    if "naive" in args.what:
        for name, n in (("tiny", 450), ("minilm", 979)):
            for r in naive(name, n):
                print(json.dumps(r))
    if "growth" in args.what:
        for r in growth(300):
            print(json.dumps(r))


if __name__ == "__main__":
    main()
