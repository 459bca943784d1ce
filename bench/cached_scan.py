"""The benchmarks' scan of standard-library code, saved once and reused (``--scan DIR``): the same scan across runs,
so repeated measurements compare the lens, not a fresh scan."""

from __future__ import annotations

import os


def stdlib_scan(ml, model, n_docs: int, path: str | None, **options):
    """``ml.scan(model, ml.datasets.stdlib_code(n_docs), overflow="windows", **options)``, loaded from ``path`` when a
    scan is saved there, else computed and (with ``path``) saved there."""
    if path and os.path.exists(os.path.join(path, "manifest.json")):
        return ml.Scan.load(path)
    scan = ml.scan(model, ml.datasets.stdlib_code(n_docs), overflow="windows", progress=False, **options)
    if path:
        scan.save(path)
    return scan
