"""Peak memory of the Ray engine's driver, before and after it stopped loading the model to plan.

The same scan (a model spec, ``engine`` Ray with one worker, a local Ray cluster, ``out=`` a fresh directory) runs
in a fresh process per code version: the code ``--before`` (a git revision, extracted with ``git archive``) and
the working tree. Each process reports the peak resident memory of the driver itself (``VmHWM``; the Ray workers
are other processes), and its resident memory right after ``import mri_lens``.

    python bench/bench_driver.py [--models tiny,minilm] [--docs 1000] [--before 5a54d72]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, os, sys, tempfile, time
sys.path.insert(0, os.path.join(os.environ["BENCH_TREE"], "tests"))

def vm(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key)) / 1024

import mri_lens as ml
after_import = vm("VmRSS:")
from corpora import PROSE, code_snippets
texts = (code_snippets(40) + list(PROSE)) * (int(os.environ["BENCH_DOCS"]) // (40 + len(PROSE)) + 1)
corpus = ml.Corpus(texts[: int(os.environ["BENCH_DOCS"])])
spec = ml.ModelSpec(os.environ["BENCH_MODEL"], device="cpu")
out = tempfile.mkdtemp(prefix="mri_lens-bench-driver-")
t0 = time.perf_counter()
if hasattr(ml, "RayEngine"):
    s = ml.scan(spec, corpus, out=os.path.join(out, "scan"), engine=ml.RayEngine(workers=1), progress=False)
else:
    s = ml.scan(spec, corpus, out=os.path.join(out, "scan"), engine="ray", workers=1, progress=False)
seconds = time.perf_counter() - t0
print(json.dumps({"after_import_mb": after_import, "peak_mb": vm("VmHWM:"), "seconds": seconds,
                  "docs": s.n_docs, "tokens": int(s.stats.count), "modules": sorted(
                      m for m in ("transformer_lens", "transformers", "torch") if m in sys.modules)}))
"""


def _tree_at(rev: str, into: str) -> None:
    """The repository at ``rev`` (``git archive``), extracted into the directory ``into``."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)


def _run(tree: str, model: str, docs: int) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, BENCH_TREE=tree, BENCH_MODEL=model, BENCH_DOCS=str(docs),
               HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    p = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, cwd=tree)
    if p.returncode != 0:
        raise SystemExit(f"the scan failed ({tree}, {model}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny,minilm")
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--before", default="5a54d72", help="git revision of the old driver (default: the commit "
                                                         "before the change)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="mri_lens-bench-trees-")
    try:
        old = os.path.join(work, "before")
        os.makedirs(old)
        _tree_at(args.before, old)
        rows = []
        for model in args.models.split(","):
            before = _run(old, model, args.docs)
            after = _run(ROOT, model, args.docs)
            rows.append((model, before, after))
            print(f"{model}: before {before}\n{model}: after  {after}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.docs} documents, one Ray worker on a local cluster; driver process only (VmHWM)\n")
    print("| model | driver peak before (MB) | driver peak after (MB) | before / after | after `import mri_lens` "
          "(MB, before / after) | modules the driver imported, after |")
    print("|---|---|---|---|---|---|")
    for model, b, a in rows:
        print(f"| {model} | {b['peak_mb']:.0f} | {a['peak_mb']:.0f} | **{b['peak_mb'] / a['peak_mb']:.2f}x** | "
              f"{b['after_import_mb']:.0f} / {a['after_import_mb']:.0f} | {', '.join(a['modules']) or 'none'} |")


if __name__ == "__main__":
    main()
