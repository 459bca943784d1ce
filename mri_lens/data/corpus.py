"""Corpus: texts with optional integer labels and label names, validated on construction."""

from __future__ import annotations

import hashlib
import html
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import CategoryError, CorpusError

__all__ = ["Corpus"]

FINGERPRINT_FORMAT = "mri_lens.corpus/2\n"  # hashed first: the version of what follows


def _preview(text: str, n: int = 40) -> str:
    return (text[:n] + "...") if len(text) > n else text


@dataclass(init=False, repr=False)
class Corpus:
    """A list of documents with optional categorical labels.

    Parameters
    ----------
    texts: sequence of non-empty strings.
    labels: ``None``, a sequence of strings (category names), or of integers (codes into ``label_names``;
        whole-number floats count as integers). Booleans alone become the categories ``"False"``/``"True"``.
        Mixed kinds (``["1", 1]``, ``[True, 0]``) and any other type raise :class:`CorpusError`.
    label_names: names of integer codes; derived (sorted) from string labels when omitted.

    Attributes
    ----------
    texts: list[str], length n_docs.
    labels: ndarray of shape (n_docs,), int64 codes, or None.
    label_names: list[str] or None.
    """

    texts: list[str]
    labels: np.ndarray | None = None
    label_names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __init__(self, texts: Sequence[str], labels: Sequence[Any] | np.ndarray | None = None,
                 label_names: Sequence[str] | None = None, *, meta: dict[str, Any] | None = None):
        if isinstance(texts, str):
            raise CorpusError("texts must be a sequence of strings, not one string")
        texts = list(texts)
        if not texts:
            raise CorpusError("the corpus is empty: give at least one text")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise CorpusError(f"text at index {i} is {type(t).__name__}, not str: {t!r:.60}")
            if not t.strip():
                raise CorpusError(f"text at index {i} is empty or whitespace only")
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as e:
                raise CorpusError(f"text at index {i} is not valid Unicode: it holds a lone surrogate at character "
                                  f"{e.start} (decode the source with errors='replace' or remove it)") from None
        self.texts = texts
        self.meta = dict(meta or {})
        self.labels, self.label_names = self._encode_labels(labels, label_names, len(texts))

    @staticmethod
    def _encode_labels(labels, label_names, n):
        if labels is None:
            if label_names is not None:
                raise CorpusError("label_names given without labels")
            return None, None
        labels = list(labels.tolist() if isinstance(labels, np.ndarray) else labels)
        if len(labels) != n:
            raise CorpusError(f"length mismatch: {n} texts but {len(labels)} labels")
        first: dict[str, int] = {}  # label kind -> index of its first label
        for i, lab in enumerate(labels):
            if lab is None or (isinstance(lab, (float, np.floating)) and np.isnan(lab)):
                raise CorpusError(f"label at index {i} is missing")
            if isinstance(lab, (bool, np.bool_)):
                kind = "bool"
            elif isinstance(lab, str):
                kind = "str"
            elif isinstance(lab, (int, np.integer)):
                kind = "int"
            elif isinstance(lab, (float, np.floating)) and float(lab).is_integer():
                labels[i], kind = int(lab), "int"  # e.g. a pandas int column upcast to float
            else:
                raise CorpusError(f"label at index {i} is {type(lab).__name__} {lab!r:.40}: labels must be strings "
                                  "(category names) or integers (codes)")
            first.setdefault(kind, i)
        if len(first) > 1:
            (ka, ia), (kb, ib) = sorted(first.items(), key=lambda x: x[1])[:2]
            words = {"str": "strings", "int": "integers", "bool": "booleans"}
            raise CorpusError(f"labels mix {' and '.join(sorted([words[ka], words[kb]], reverse=True))} (index {ia} "
                              f"is {labels[ia]!r:.40}, index {ib} is {labels[ib]!r:.40}): use one type for every label")
        if set(first) == {"int"}:
            codes = np.asarray(labels, dtype=np.int64)
            if label_names is None:
                label_names = [str(c) for c in range(int(codes.max()) + 1)]
            label_names = [str(x) for x in label_names]
            bad = np.flatnonzero((codes < 0) | (codes >= len(label_names)))
            if bad.size:
                raise CorpusError(f"label at index {bad[0]} is {codes[bad[0]]}, outside 0..{len(label_names) - 1} "
                                  "(the range of label_names)")
        else:
            as_str = [str(l) for l in labels]
            if label_names is None:
                label_names = sorted(set(as_str))
            label_names = [str(x) for x in label_names]
            index = {name: i for i, name in enumerate(label_names)}
            unknown = [(i, l) for i, l in enumerate(as_str) if l not in index]
            if unknown:
                raise CorpusError(f"label at index {unknown[0][0]} ({unknown[0][1]!r}) is not in label_names")
            codes = np.asarray([index[l] for l in as_str], dtype=np.int64)
        if len(set(label_names)) != len(label_names):
            raise CorpusError("label_names contains duplicates")
        return codes, list(label_names)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_list(cls, texts: Sequence[str], labels: Sequence[Any] | None = None, **kw: Any) -> "Corpus":
        return cls(texts, labels, **kw)

    @classmethod
    def from_pandas(cls, df, text: str = "text", label: str | None = None, *,
                    label_names: Sequence[str] | None = None) -> "Corpus":
        """From a DataFrame with a text column and an optional label column."""
        _check_columns(list(df.columns), text, label)
        labels = None
        if label is not None:
            col = df[label]
            if hasattr(col, "cat") and str(col.dtype) == "category" and label_names is None:
                label_names = [str(c) for c in col.cat.categories]
                labels = col.cat.codes.to_numpy().astype(np.int64)
            else:
                labels = col.tolist()
        return cls(df[text].tolist(), labels, label_names)

    @classmethod
    def from_csv(cls, path: str | os.PathLike, text: str = "text", label: str | None = None, *,
                 sep: str | None = None, **read_kwargs: Any) -> "Corpus":
        """From a CSV or TSV file (``sep`` inferred from a ``.tsv``/``.tab`` suffix)."""
        import pandas as pd

        path = os.fspath(path)
        if sep is None:
            sep = "\t" if path.lower().endswith((".tsv", ".tab")) else ","
        try:
            df = pd.read_csv(path, sep=sep, **read_kwargs)
        except FileNotFoundError as e:
            raise CorpusError(f"no such file: {path}") from e
        except UnicodeDecodeError as e:
            enc = read_kwargs.get("encoding") or "UTF-8"
            raise CorpusError(f"{path} is not {enc} text (byte {_bad_bytes(e)}: {e.reason}); save it as UTF-8, or "
                              "pass encoding=... to Corpus.from_csv") from e
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise CorpusError(f"cannot read {path} as a table: {' '.join(str(e).split())}") from e
        except OSError as e:  # a directory, no permission...
            raise CorpusError(f"cannot read {path}: {e.strerror or e}") from e
        return cls.from_pandas(df, text, label)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, text: str = "text", label: str | None = None) -> "Corpus":
        """From a JSON-lines file: one object per line (UTF-8; a leading byte-order mark is skipped)."""
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError as e:
            raise CorpusError(f"no such file: {path}") from e
        except OSError as e:  # a directory, no permission...
            raise CorpusError(f"cannot read {path}: {e.strerror or e}") from e
        try:
            content = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            lineno = e.object.count(b"\n", 0, e.start) + 1
            raise CorpusError(f"{path}:{lineno} is not UTF-8 text (byte {_bad_bytes(e)}: {e.reason}); save the "
                              "file as UTF-8") from e
        rows = []
        for lineno, line in enumerate(content.split("\n"), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise CorpusError(f"{path}:{lineno} is not valid JSON: {e.msg}") from e
        if not rows:
            raise CorpusError(f"the corpus is empty: {path} has no records")
        for i, r in enumerate(rows):
            for name, kind in ((text, "text"), (label, "label")):
                if name is not None and (not isinstance(r, dict) or name not in r):
                    raise CorpusError(f"record {i} has no {kind} field {name!r}")
        return cls([r[text] for r in rows], [r[label] for r in rows] if label else None)

    @classmethod
    def from_hf(cls, dataset, text: str = "text", label: str | None = "label") -> "Corpus":
        """From a Hugging Face ``datasets.Dataset``; ``ClassLabel`` names are respected."""
        _check_columns(list(dataset.column_names), text, label)
        names = None
        if label is not None:
            feat = dataset.features[label]
            names = list(getattr(feat, "names", None) or []) or None
        return cls(list(dataset[text]), list(dataset[label]) if label else None, names)

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> str:
        return self.texts[i]

    def __iter__(self) -> Iterable[str]:
        return iter(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Corpus":
        idx = np.asarray(indices, dtype=np.int64)
        labels = None if self.labels is None else self.labels[idx]
        return Corpus([self.texts[i] for i in idx], labels, self.label_names if labels is not None else None,
                      meta=self.meta)

    def where(self, categories: Sequence[str]) -> "Corpus":
        """Keep documents whose label is one of ``categories``; label codes follow the given order."""
        if self.labels is None:
            raise CorpusError("the corpus has no labels")
        unknown = [c for c in categories if c not in self.label_names]
        if unknown:
            raise CategoryError(f"unknown categories {unknown}; the corpus has {self.label_names}")
        wanted = [self.label_names.index(c) for c in categories]
        idx = np.flatnonzero(np.isin(self.labels, wanted))
        remap = {old: new for new, old in enumerate(wanted)}
        return Corpus([self.texts[i] for i in idx], [remap[int(self.labels[i])] for i in idx], list(categories),
                      meta=self.meta)

    def label_counts(self) -> dict[str, int]:
        if self.labels is None:
            return {}
        counts = np.bincount(self.labels, minlength=len(self.label_names))
        return {n: int(c) for n, c in zip(self.label_names, counts)}

    def fingerprint(self) -> str:
        """SHA-256 of texts and labels: identifies the corpus in saved results without storing it.

        Injective: every text and label name is hashed as its UTF-8 length (8 bytes) then its bytes, after the
        number of texts, so no two corpora (texts split elsewhere, a label moved, labels present or not) share the
        byte stream that is hashed."""
        h = hashlib.sha256(FINGERPRINT_FORMAT.encode("ascii"))

        def put(b: bytes) -> None:
            h.update(struct.pack("<Q", len(b)))
            h.update(b)

        h.update(struct.pack("<Q", len(self.texts)))
        for t in self.texts:
            put(t.encode("utf-8"))
        if self.labels is None:
            h.update(b"\x00")
        else:
            h.update(b"\x01" + struct.pack("<Q", len(self.label_names)))
            for name in self.label_names:
                put(name.encode("utf-8"))
            put(np.asarray(self.labels, dtype="<i8").tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        lab = f", labels={self.label_counts()}" if self.labels is not None else ""
        return f"Corpus(n_docs={len(self)}{lab})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{i}</td><td>{html.escape(self.label_names[self.labels[i]]) if self.labels is not None else ''}"
            f"</td><td>{html.escape(_preview(t, 120))}</td></tr>" for i, t in enumerate(self.texts[:5]))
        return (f"<div><b>{html.escape(repr(self))}</b><table><tr><th>#</th><th>label</th><th>text</th></tr>"
                f"{rows}</table></div>")


def _bad_bytes(e: UnicodeDecodeError) -> str:
    """The undecodable bytes of ``e``, as hex (``0xff``, ``0xc3 0x28``)."""
    return " ".join(f"0x{b:02x}" for b in e.object[e.start:min(e.end, e.start + 4)])


def _check_columns(columns: list, text: str, label: str | None) -> None:
    for name, kind in ((text, "text"), (label, "label")):
        if name is not None and name not in columns:
            raise CorpusError(f"unknown {kind} column {name!r}; columns are {columns}")


def as_corpus(corpus: Any) -> Corpus:
    """Accept a Corpus or a plain sequence of strings."""
    if isinstance(corpus, Corpus):
        return corpus
    if isinstance(corpus, str):
        return Corpus([corpus])
    return Corpus(corpus)


def check_categories(requested: Sequence[str] | str, known: Sequence[str], where: str) -> list[str]:
    """``requested`` category names as a list when every one is in ``known``; else
    :class:`~mri_lens.errors.CategoryError` naming the unknown ones and the known ones, e.g. ``unknown category
    'pos'; the scan's categories are 'code', 'prose'``. ``where`` says who holds ``known``: ``"the scan"``,
    ``"the maps"``, ``"the graph"``... The one check of category names in the lenses, so every "unknown category"
    reads the same."""
    requested = [requested] if isinstance(requested, str) else list(requested)
    known = [str(k) for k in known]
    unknown = [c for c in requested if c not in known]
    if unknown:
        owner = where + ("'" if where.endswith("s") else "'s")
        listed = ", ".join(repr(str(c)) for c in unknown)
        have = f"{owner} categories are {', '.join(map(repr, known))}" if known else f"{where} has no categories"
        raise CategoryError(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {listed}; {have}")
    return requested
