"""Neuroscope site benchmark: every neuron of the tiny LM (4 layers x 512) on a scan of the README's standard-library
corpus, written as data files + one viewer. Prints wall and CPU time (this process, all threads: what holds on a
machine other jobs share), the split between recomputing examples and the ablation estimate, bytes, files, bytes
per neuron and the projection to gpt2-small's 36,864 neurons.

    python bench/bench_site.py                     # stdlib_code(400), overflow="windows", pooling mean + max
    python bench/bench_site.py --scan runs/stdlib400 --no-ablation    # reuse (or save) the scan; no ablation
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cached_scan import stdlib_scan  # noqa: E402

GPT2_SMALL_NEURONS = 12 * 3072


def _timed(module, name: str, spent: dict[str, float]) -> None:
    """Wrap ``module.name`` to add its wall time to ``spent[name]``."""
    inner = getattr(module, name)

    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return inner(*a, **kw)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t

    setattr(module, name, wrapper)


def main() -> None:
    import mri_lens as ml
    from mri_lens.lenses.neuroscope import neuron_site

    p = argparse.ArgumentParser()
    p.add_argument("--docs", type=int, default=400)
    p.add_argument("--scan", default=None, help="a saved scan to reuse, or where to save the new one")
    p.add_argument("--out", default=None, help="keep the site here (default: a temporary directory)")
    p.add_argument("--no-ablation", action="store_true", help="leave out the ablation estimate")
    args = p.parse_args()

    model = ml.models.tiny_lm(device="cpu")
    scan = stdlib_scan(ml, model, args.docs, args.scan, pooling=("mean", "max"))
    spent: dict[str, float] = {}
    _timed(neuron_site, "extract_examples", spent)
    _timed(neuron_site, "_ablation", spent)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or os.path.join(tmp, "site")
        c0, t0 = time.process_time(), time.perf_counter()
        ml.neuroscope.site(scan, model, out, ablation=not args.no_ablation, progress=False, overwrite=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        sizes = [os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs]
    n = scan.n_layers * scan.d_mlp
    per = sum(sizes) / n
    print(f"tiny LM, {n} neurons ({scan.n_layers} layers x {scan.d_mlp}), {scan.n_docs} documents, "
          f"{int(scan.stats.count)} tokens; torch threads {__import__('torch').get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"site: {wall:.1f} s wall, {cpu:.1f} s CPU; recomputing examples {spent.get('extract_examples', 0):.1f} s, "
          f"ablation estimate {spent.get('_ablation', 0):.1f} s, the rest "
          f"{wall - sum(spent.values()):.1f} s")
    print(f"size: {sum(sizes) / 1e6:.1f} MB in {len(sizes)} files, {per / 1e3:.1f} KB per neuron")
    print(f"gpt2-small projection: {GPT2_SMALL_NEURONS} neurons x {per / 1e3:.1f} KB = "
          f"{GPT2_SMALL_NEURONS * per / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
