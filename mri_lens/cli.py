"""``mri-lens`` command line: a thin layer over the public functions.

    mri-lens scan --model <name|dir|tiny|minilm> --corpus data.csv --text-col text --label-col label --out runs/x
    mri-lens report --scan runs/x --out runs/x/report.html
    mri-lens demo [--out mri_lens_demo]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .errors import MriLensError


def _model(name: str, device: str | None):
    from . import models
    from .adapter import load_model

    if name in ("tiny", "tiny_lm", "tiny-lm"):
        return models.tiny_lm(device=device)
    if name in ("minilm", "minilm-l6"):
        return models.minilm(device=device)
    return load_model(name, device=device)


def _corpus(path: str, text: str, label: str | None):
    from .corpus import Corpus

    if path.lower().endswith((".jsonl", ".ndjson")):
        return Corpus.from_jsonl(path, text=text, label=label)
    return Corpus.from_csv(path, text=text, label=label)


def _layers(spec: str | None):
    if not spec:
        return None
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def cmd_scan(args) -> int:
    from .scanner import scan

    corpus = _corpus(args.corpus, args.text_col, args.label_col)
    model = _model(args.model, args.device)
    result = scan(model, corpus, layers=_layers(args.layers), batch_size=args.batch_size,
                  max_batch_tokens=args.max_batch_tokens or None, max_length=args.max_length, overflow=args.overflow, pooling=tuple(args.pooling.split(",")),
                  top_k=args.top_k, dtype=args.dtype, padding_side=args.padding_side, progress=not args.quiet)
    path = result.save(args.out)
    print(f"{result!r}\nsaved to {path}")
    return 0


def cmd_report(args) -> int:
    from .report import write_scan_report
    from .store import Scan

    s = Scan.load(args.scan)
    cats = tuple(args.categories.split(",")) if args.categories else None
    out = write_scan_report(s, args.out or os.path.join(args.scan, "report.html"), categories=cats)
    print(f"report written to {os.path.abspath(out)}")
    return 0


def cmd_demo(args) -> int:
    """MiniLM-L6 on drug reviews (positive vs negative): scan, save, offline HTML report."""
    from . import datasets, models
    from .report import write_scan_report
    from .scanner import scan

    t0 = time.perf_counter()
    corpus = datasets.drug_reviews(label="rating", categories=["positive", "negative"])
    if args.limit:
        corpus = corpus.subset(range(min(args.limit, len(corpus))))
    print(f"corpus: {corpus!r}")
    model = models.minilm(device=args.device)
    result = scan(model, corpus, batch_size=args.batch_size, pooling=("mean", "max"), progress=not args.quiet)
    t_scan = time.perf_counter() - t0
    scan_dir = result.save(os.path.join(args.out, "scan"))
    report = write_scan_report(result, os.path.join(args.out, "index.html"),
                               title="mri_lens demo: MiniLM-L6 on drug reviews (positive vs negative)",
                               categories=("positive", "negative"))
    print(f"{result!r}")
    print(f"scan: {t_scan:.1f} s; total {time.perf_counter() - t0:.1f} s")
    print(f"saved scan: {scan_dir}")
    print(f"report: {os.path.abspath(report)}  (open it in a browser; works offline)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mri-lens", description="Neuron-level lenses for TransformerLens models.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("scan", help="scan a corpus and save the result")
    s.add_argument("--model", required=True, help="TL/hub name, local HF directory, 'tiny' or 'minilm'")
    s.add_argument("--corpus", required=True, help="CSV, TSV or JSONL file")
    s.add_argument("--text-col", default="text")
    s.add_argument("--label-col", default=None)
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--layers", default=None, help="e.g. 0,1 or 0-3 (default: all)")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--max-batch-tokens", type=int, default=2048)
    s.add_argument("--max-length", type=int, default=None)
    s.add_argument("--overflow", choices=("truncate", "windows", "error"), default="truncate")
    s.add_argument("--pooling", default="mean,max")
    s.add_argument("--top-k", type=int, default=20)
    s.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    s.add_argument("--padding-side", choices=("right", "left"), default="right")
    s.add_argument("--device", default=None)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_scan)

    r = sub.add_parser("report", help="offline HTML report of a saved scan")
    r.add_argument("--scan", required=True)
    r.add_argument("--out", default=None)
    r.add_argument("--categories", default=None, help="two label names, comma separated")
    r.set_defaults(func=cmd_report)

    d = sub.add_parser("demo", help="MiniLM-L6 on drug reviews, end to end, offline")
    d.add_argument("--out", default="mri_lens_demo")
    d.add_argument("--limit", type=int, default=None, help="use only the first N reviews")
    d.add_argument("--batch-size", type=int, default=32)
    d.add_argument("--device", default=None)
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MriLensError as e:
        print(f"mri-lens: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
