"""Corpus constructors and validation: every bad input gets a clear error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mri_lens import Corpus, CorpusError


def test_from_list_string_labels():
    c = Corpus(["a b", "c d", "e f"], ["neg", "pos", "neg"])
    assert c.label_names == ["neg", "pos"]
    np.testing.assert_array_equal(c.labels, [0, 1, 0])
    assert c.label_counts() == {"neg": 2, "pos": 1}


def test_integer_labels_with_names():
    c = Corpus(["a", "b"], [1, 0], label_names=["x", "y"])
    assert c.label_names == ["x", "y"] and list(c.labels) == [1, 0]


@pytest.mark.parametrize("texts, labels, match", [
    ([], None, "empty"),
    (["a", "b"], ["x"], "length mismatch: 2 texts but 1 labels"),
    (["a", 3], None, "text at index 1 is int"),
    (["a", "  "], None, "text at index 1 is empty"),
    (["a", None], None, "text at index 1 is NoneType"),
    ("just one string", None, "not one string"),
    (["a", "b"], ["x", None], "label at index 1 is missing"),
])
def test_bad_inputs(texts, labels, match):
    with pytest.raises(CorpusError, match=match):
        Corpus(texts, labels)


@pytest.mark.parametrize("labels, match", [
    (["1", 1], r"labels mix strings and integers \(index 0 is '1', index 1 is 1\)"),
    ([1, "x"], "labels mix strings and integers"),
    ([True, 0], "labels mix integers and booleans"),
    (["x", False], "labels mix strings and booleans"),
    ([1.5, 0], "label at index 0 is float 1.5: labels must be strings .* or integers"),
    ([0, [1]], "label at index 1 is list"),
    ([0, np.float64(2.5)], "label at index 1 is float64"),
])
def test_labels_of_mixed_or_unsupported_types(labels, match):
    with pytest.raises(CorpusError, match=match):
        Corpus(["a", "b"], labels)


def test_integer_valued_numpy_and_bool_labels_still_work():
    c = Corpus(["a", "b", "c"], [np.int64(1), np.int32(0), 1])
    assert list(c.labels) == [1, 0, 1] and c.label_names == ["0", "1"]
    c = Corpus(["a", "b"], np.array([1.0, 0.0]), label_names=["neg", "pos"])  # pandas int column upcast to float
    assert list(c.labels) == [1, 0]
    df = pd.DataFrame({"t": ["a", "b"], "l": [2, 0]})
    assert list(Corpus.from_pandas(df, "t", "l").labels) == [2, 0]
    assert Corpus(["a", "b"], [True, False]).label_names == ["False", "True"]


def test_lone_surrogate_text_is_refused():
    with pytest.raises(CorpusError, match="text at index 1 is not valid Unicode"):
        Corpus(["fine", "abc\ud800def"])


def test_label_out_of_range():
    with pytest.raises(CorpusError, match="outside 0..1"):
        Corpus(["a", "b"], [0, 2], label_names=["x", "y"])


def test_csv_tsv_jsonl_pandas(tmp_path):
    df = pd.DataFrame({"text": ["one doc", "two doc", "three doc"], "label": ["a", "b", "a"]})
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    with open(tmp_path / "d.jsonl", "w") as f:
        for r in df.to_dict("records"):
            f.write(json.dumps(r) + "\n")
    for c in (Corpus.from_csv(tmp_path / "d.csv", "text", "label"), Corpus.from_csv(tmp_path / "d.tsv", "text", "label"),
              Corpus.from_jsonl(tmp_path / "d.jsonl", "text", "label"), Corpus.from_pandas(df, "text", "label")):
        assert c.texts == df["text"].tolist() and c.label_names == ["a", "b"]
    with pytest.raises(CorpusError, match="unknown label column 'rating'"):
        Corpus.from_csv(tmp_path / "d.csv", "text", "rating")
    with pytest.raises(CorpusError, match="unknown text column"):
        Corpus.from_pandas(df, "body")
    with pytest.raises(CorpusError, match="no such file"):
        Corpus.from_csv(tmp_path / "missing.csv")


def test_pandas_categorical_keeps_category_order():
    df = pd.DataFrame({"t": ["x", "y"], "l": pd.Categorical(["lo", "hi"], categories=["lo", "hi"])})
    assert Corpus.from_pandas(df, "t", "l").label_names == ["lo", "hi"]


def test_jsonl_errors(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(CorpusError, match="bad.jsonl:2 is not valid JSON"):
        Corpus.from_jsonl(p)
    p.write_text('{"body": "ok"}\n')
    with pytest.raises(CorpusError, match="record 0 has no text field"):
        Corpus.from_jsonl(p)


def test_hf_dataset_classlabel_names():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": ["good", "bad", "fine"], "label": [1, 0, 1]},
                                    features=datasets.Features({"text": datasets.Value("string"),
                                                                "label": datasets.ClassLabel(names=["neg", "pos"])}))
    c = Corpus.from_hf(ds)
    assert c.label_names == ["neg", "pos"] and list(c.labels) == [1, 0, 1]
    with pytest.raises(CorpusError, match="unknown label column"):
        Corpus.from_hf(ds, label="stars")


def test_where_subset_fingerprint():
    c = Corpus(["a", "b", "c", "d"], ["x", "y", "z", "x"])
    w = c.where(["x", "z"])
    assert w.texts == ["a", "c", "d"] and w.label_names == ["x", "z"] and list(w.labels) == [0, 1, 0]
    assert c.subset([0, 3]).texts == ["a", "d"]
    assert c.fingerprint() == Corpus(["a", "b", "c", "d"], ["x", "y", "z", "x"]).fingerprint()
    assert c.fingerprint() != Corpus(["a", "b", "c", "e"], ["x", "y", "z", "x"]).fingerprint()
    with pytest.raises(CorpusError, match="unknown categories"):
        c.where(["w"])
    assert "<table>" in c._repr_html_()


def test_fingerprint_is_injective_over_text_boundaries():
    """Texts are hashed with their lengths: moving a byte from the end of one text to the start of the next, or
    splitting one text in two, gives another fingerprint (a NUL separator alone let these collide)."""
    a = Corpus(["def f(x):\x00", "return y"] * 20)
    b = Corpus(["def f(x):", "\x00return y"] * 20)
    assert a.fingerprint() != b.fingerprint()
    assert Corpus(["ab\x00", "c"]).fingerprint() != Corpus(["ab", "\x00c"]).fingerprint()
    assert Corpus(["a\x00b"]).fingerprint() != Corpus(["a", "b"]).fingerprint()
    assert Corpus(["a b"]).fingerprint() == Corpus(["a b"]).fingerprint()


def test_fingerprint_is_injective_over_labels():
    """Label names are length-prefixed too, and a labelled corpus never shares an unlabelled one's fingerprint."""
    joined = Corpus(["a", "b"], [0, 0], ["x\x00y"])
    split = Corpus(["a", "b"], [0, 0], ["x", "y"])
    assert joined.fingerprint() != split.fingerprint()
    assert Corpus(["a", "b"], [0, 1], ["x", "y"]).fingerprint() != Corpus(["a", "b"], [1, 0], ["x", "y"]).fingerprint()
    # the same codes under other names, and the same names in another order, are other corpora
    assert Corpus(["a", "b"], [0, 1], ["x", "y"]).fingerprint() != Corpus(["a", "b"], [0, 1], ["y", "x"]).fingerprint()
    assert Corpus(["a", "b"], ["x", "x"]).fingerprint() != Corpus(["a", "b"]).fingerprint()
