"""Scans of SAE latents: cost against a bare forward plus the SAE's encode, and memory of a very wide SAE.

1. ``speed``: the tiny LM, a random 16x SAE on ``blocks.2.hook_resid_post`` (128 -> 2048 latents): ``ml.scan`` of
   the latents (statistics, histograms, top-k, pooling) against the same batches run bare: the forward stopped
   after the hook, then ``encode`` (nothing kept). Best of ``--rounds``.
2. ``memory``: a random 131,072-wide SAE on the same hook, scanned with ``out=`` (pooled values on disk); the
   process's peak resident memory, in a fresh process per run.

Usage: ``python bench/bench_units.py [speed|memory] [--docs N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

import mri_lens as ml
from mri_lens.model.sae import save_sae_dir


def corpus(n: int) -> list[str]:
    import glob
    import sysconfig

    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")), key=os.path.basename)
    texts = []
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            src = fh.read()
        texts += [src[i:i + 1500] for i in range(0, len(src), 1500)]
        if len(texts) >= n:
            break
    return texts[:n]


def random_sae(path: str, d_sae: int) -> str:
    g = torch.Generator().manual_seed(0)
    t = {"W_enc": torch.randn(128, d_sae, generator=g) * 0.1, "b_enc": torch.zeros(d_sae) - 0.5,
         "W_dec": torch.randn(d_sae, 128, generator=g) * 0.1, "b_dec": torch.zeros(128)}
    save_sae_dir(path, {"architecture": "standard", "d_in": 128, "d_sae": d_sae, "apply_b_dec_to_input": True,
                        "normalize_activations": "none", "metadata": {"hook_name": "blocks.2.hook_resid_post"}}, t)
    return path


def same_batches(scan) -> list[list[list[int]]]:
    """The scan's own batch plan (length-sorted, its batch size and token bound), as token lists."""
    import numpy as np

    from mri_lens.scanning.batching import plan_batches

    seqs = [scan.tokens(d).tolist() for d in range(scan.n_docs)]
    plan = plan_batches(np.array([len(x) for x in seqs]), scan.meta["batch_size"], scan.meta["max_batch_tokens"])
    return [[seqs[int(i)] for i in b] for b in plan]


def bare(model, units, plan_batches) -> float:
    """The same batches: forward stopped after the hook, then encode; nothing kept."""
    from mri_lens.model.adapter import as_adapter
    from mri_lens.model.capture import get_backend

    adapter = as_adapter(model)
    cap = get_backend(adapter, None, units=units)
    t0 = time.perf_counter()
    for seqs in plan_batches:
        tokens, mask, _ = adapter.pad_batch(seqs)
        cap.forward(tokens, mask, [2], consume=lambda layer, x: None)
    return time.perf_counter() - t0


def speed(n_docs: int, rounds: int) -> dict:
    model = ml.models.tiny_lm(device="cpu")
    texts = corpus(n_docs)
    with tempfile.TemporaryDirectory() as d:
        units = ml.units.sae({2: random_sae(os.path.join(d, "sae"), 2048)})
        scan_s, bare_s = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            s = ml.scan(model, texts, units=units, progress=False, max_length=256)
            scan_s.append(time.perf_counter() - t0)
            batches = same_batches(s)
            bare_s.append(bare(model, units, batches))
    tokens = int(s.stats.count)
    return {"docs": n_docs, "tokens": tokens, "scan_s": round(min(scan_s), 3), "bare_forward_encode_s":
            round(min(bare_s), 3), "ratio_bare_over_scan": round(min(bare_s) / min(scan_s), 3),
            "threads": torch.get_num_threads()}


def memory_child(n_docs: int, d_sae: int) -> dict:
    model = ml.models.tiny_lm(device="cpu")
    texts = corpus(n_docs)
    with tempfile.TemporaryDirectory() as d:
        units = ml.units.sae({2: random_sae(os.path.join(d, "sae"), d_sae)})
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        s = ml.scan(model, texts, units=units, progress=False, max_length=256, out=os.path.join(d, "run"))
        secs = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"docs": n_docs, "d_sae": d_sae, "tokens": int(s.stats.count), "seconds": round(secs, 1),
            "peak_rss_mb_before_scan": round(base / 1024), "peak_rss_mb": round(peak / 1024),
            "pooled_bytes_per_doc": d_sae * 2 * 4}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("speed", "memory", "memory-child"))
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--d-sae", type=int, default=131072)
    a = ap.parse_args()
    if a.what == "speed":
        print(json.dumps(speed(a.docs, a.rounds)))
    elif a.what == "memory-child":
        print(json.dumps(memory_child(a.docs, a.d_sae)))
    else:
        out = subprocess.run([sys.executable, __file__, "memory-child", "--docs", str(a.docs), "--d-sae",
                              str(a.d_sae)], capture_output=True, text=True, check=True).stdout
        print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
