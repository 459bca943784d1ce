"""Scoring fitted graphs on held-out text, against token-lookup and n-gram-lookup baselines.

Protocol (the paper's, with the automated-interpretability correlation added): the held-out top examples are run in
full; a token *fires* when its normalised activation is >= ``firing_threshold`` (0.5), in truth and in prediction.
Precision, recall and F1 are computed for firing and for non-firing tokens per neuron. The correlation between
predicted and true normalised activations is pooled over the held-out top examples plus random corpus examples
(firing on ordinary text is penalised there). A neuron with no firing held-out token has undefined firing recall and
F1: it is counted (``no_firing_test_token``), never silently dropped.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np

__all__ = ["TokenLookup", "NgramLookup", "evaluate", "prf", "score_activations", "summary_table"]

METHODS = ("n2g", "token", "ngram")


def _concat(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ids ``[n]`` and each position's text start ``[n]``."""
    lens = np.array([len(s) for s in seqs], dtype=np.int64)
    if not len(seqs) or lens.sum() == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)])
    return np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]), np.repeat(offs[:-1], lens)


class TokenLookup:
    """Baseline: predict the mean normalised activation seen for the token in training (0 for unseen tokens)."""

    def fit(self, seqs: Sequence[Sequence[int]], acts: Sequence[np.ndarray]) -> "TokenLookup":
        ids, _ = _concat(seqs)
        a = np.concatenate([np.asarray(x, np.float64) for x in acts]) if len(acts) else np.zeros(0)
        self.table_: dict[int, float] = {}
        if len(ids):
            u, inv = np.unique(ids, return_inverse=True)
            means = np.bincount(inv, weights=a) / np.bincount(inv)
            self.table_ = dict(zip(u.tolist(), means.tolist()))
        return self

    def predict(self, ids: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
        return np.array([self.table_.get(int(t), 0.0) for t in ids], dtype=np.float64)


class NgramLookup:
    """Baseline: predict the mean normalised activation seen after the same ``n`` tokens (the token and the
    ``n - 1`` before it, fewer at a text's start) in training; 0 for unseen n-grams."""

    def __init__(self, n: int = 5):
        self.n = int(n)

    def _keys(self, ids: np.ndarray, starts: np.ndarray) -> list[tuple[int, ...]]:
        out = []
        for j in range(len(ids)):
            out.append(tuple(ids[max(int(starts[j]), j - self.n + 1):j + 1].tolist()))
        return out

    def fit(self, seqs: Sequence[Sequence[int]], acts: Sequence[np.ndarray]) -> "NgramLookup":
        ids, starts = _concat(seqs)
        a = np.concatenate([np.asarray(x, np.float64) for x in acts]) if len(acts) else np.zeros(0)
        sums: dict[tuple[int, ...], list[float]] = {}
        for k, v in zip(self._keys(ids, starts), a.tolist()):
            s = sums.setdefault(k, [0.0, 0])
            s[0] += v
            s[1] += 1
        self.table_ = {k: s / c for k, (s, c) in sums.items()}
        return self

    def predict(self, ids: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
        starts = np.zeros(len(ids), np.int64) if starts is None else starts
        return np.array([self.table_.get(k, 0.0) for k in self._keys(ids, starts)], dtype=np.float64)


def prf(true: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> dict[str, float | None]:
    """Precision, recall and F1 of firing (``>= threshold``) and of non-firing tokens.

    Undefined values are None: recall and F1 of a class absent from the truth, precision of a class neither
    present nor predicted. A class present but never predicted gets precision 0.
    """
    t = np.asarray(true) >= threshold
    p = np.asarray(pred) >= threshold
    out: dict[str, float | None] = {}
    for name, tt, pp in (("firing", t, p), ("nonfiring", ~t, ~p)):
        tp = int(np.sum(tt & pp))
        n_true, n_pred = int(tt.sum()), int(pp.sum())
        prec = tp / n_pred if n_pred else (0.0 if n_true else None)
        rec = tp / n_true if n_true else None
        if rec is None:
            f1 = None
        else:
            f1 = 2 * prec * rec / (prec + rec) if (prec or 0) + rec > 0 else 0.0
        out[f"{name}_precision"], out[f"{name}_recall"], out[f"{name}_f1"] = prec, rec, f1
    return out


def _corr(true: np.ndarray, pred: np.ndarray) -> float | None:
    if len(true) < 2 or np.std(true) == 0 or np.std(pred) == 0:
        return None  # undefined for a constant prediction (or truth)
    return float(np.corrcoef(true, pred)[0, 1])


def score_activations(graph: Any, test: Sequence[Sequence[int]], test_acts: Sequence[np.ndarray],
                      random: Sequence[Sequence[int]] = (), random_acts: Sequence[np.ndarray] = (),
                      train: Sequence[Sequence[int]] | None = None,
                      train_acts: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """Scores of ``graph`` (and of the baselines when ``train`` is given) from true activations.

    Parameters
    ----------
    test, random, train: texts as token ids (no special tokens); ``*_acts`` their true activations
        ``[len(text)]`` (raw: divided by ``graph.max_activation`` here).
    """
    norm = graph.max_activation
    thr = graph.config.firing_threshold
    tid, tst = _concat(test)
    rid, rst = _concat(random)
    ttrue = np.concatenate([np.asarray(a, np.float64) for a in test_acts]) / norm if len(test) else np.zeros(0)
    rtrue = np.concatenate([np.asarray(a, np.float64) for a in random_acts]) / norm if len(random) else np.zeros(0)
    predictors: dict[str, Any] = {"n2g": graph.trie}
    if train is not None and train_acts is not None and len(train):
        tr_acts = [np.asarray(a, np.float64) / norm for a in train_acts]
        predictors["token"] = TokenLookup().fit(train, tr_acts)
        predictors["ngram"] = NgramLookup(graph.config.ngram).fit(train, tr_acts)
    n_fire = int(np.sum(ttrue >= thr))
    out: dict[str, Any] = {"n_test_texts": len(test), "n_random_texts": len(random), "n_test_tokens": int(len(tid)),
                           "n_random_tokens": int(len(rid)), "n_firing_test_tokens": n_fire,
                           "no_firing_test_token": n_fire == 0, "firing_threshold": thr}
    for name, pr in predictors.items():
        tp = pr.predict(tid, tst)
        rp = pr.predict(rid, rst)
        s = prf(ttrue, tp, thr)
        s["correlation"] = _corr(np.concatenate([ttrue, rtrue]), np.concatenate([tp, rp]))
        s["random_firing_rate"] = float(np.mean(rp >= thr)) if len(rp) else None
        out[name] = s
    return out


def _as_texts(x: Any, adapter: Any) -> list[tuple[int, ...]]:
    from .neuron_graph import example_prompts

    return [p.ids for p in example_prompts(x, adapter)]


def evaluate(graph: Any, model: Any, test: Any = None, random: Any = None, *, baselines: bool = True,
             backend: Any = None) -> dict[str, Any]:
    """Score a fitted graph on held-out text (and the baselines on the same splits); stored in ``graph.scores``.

    Parameters
    ----------
    graph: a fitted :class:`~mri_lens.lenses.n2g.NeuronGraph`.
    model: the analysed model.
    test: held-out top examples (default: the examples the fit held out): TopExamples, texts or token-id lists.
    random: random corpus texts (or token-id lists) for the pooled correlation; the paper's protocol uses as many
        as there are test examples. Without them the correlation uses the test examples only.
    baselines: also fit and score token lookup and n-gram lookup on the graph's training examples.

    Returns
    -------
    dict with ``"n2g"``, ``"token"``, ``"ngram"`` score dicts (``firing_precision/recall/f1``,
    ``nonfiring_precision/recall/f1``, ``correlation``) and token counts.
    """
    from ...model.adapter import as_adapter
    from ...model.capture import get_backend
    from .fit import Forward

    adapter = as_adapter(model)
    test_ids = [tuple(t) for t in graph.examples.get("test", [])] if test is None else _as_texts(test, adapter)
    if not test_ids:
        raise ValueError("no held-out test examples: pass test=... (the fit used every example for training)")
    rand_ids = _as_texts(random, adapter) if random is not None else []
    train_ids = [tuple(t) for t in graph.examples.get("train", [])] if baselines else []
    run = Forward(adapter, get_backend(adapter, backend), graph.layer, graph.config.max_batch_tokens)
    seqs = test_ids + rand_ids + train_ids
    acts = run([(s, graph.neuron) for s in seqs])
    a, b = len(test_ids), len(test_ids) + len(rand_ids)
    graph.scores = score_activations(graph, test_ids, acts[:a], rand_ids, acts[a:b],
                                     train_ids or None, acts[b:] if train_ids else None)
    return graph.scores


def _mean(vals: Iterable[Any]) -> float | None:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def _graphs_of(graphs: Any) -> Iterator[Any]:
    """Every graph in ``graphs``: graphs, or a mapping of them (what ``explain_layer`` returns, ``{neuron: graph}``,
    or ``{(layer, neuron): graph}``), or an iterable of such mappings (several layers)."""
    from collections.abc import Mapping

    if isinstance(graphs, Mapping):
        graphs = graphs.values()
    for g in graphs:
        if isinstance(g, Mapping):
            yield from _graphs_of(g)
        elif hasattr(g, "scores") and hasattr(g, "layer"):
            yield g
        else:
            raise TypeError(f"summary_table takes neuron graphs or mappings of them (what explain_layer returns), "
                            f"got a {type(g).__name__}")


def summary_table(graphs: Any):
    """Per-layer means (over neurons with a defined value) like the paper's table: a pandas DataFrame.

    ``graphs``: neuron graphs, or what :func:`~mri_lens.lenses.n2g.explain_layer` returns (``{neuron: graph}``), a
    ``{(layer, neuron): graph}`` mapping, or several of those (one per layer). Columns per method (``n2g``,
    ``token``, ``ngram``): firing precision / recall / F1, non-firing F1 and the pooled correlation; plus the number
    of neurons and of neurons with no firing held-out token. Graphs never scored are left out.
    """
    import pandas as pd

    by_layer: dict[int, list[Any]] = {}
    for g in _graphs_of(graphs):
        if g.scores:
            by_layer.setdefault(g.layer, []).append(g.scores)
    rows = []
    for layer in sorted(by_layer):
        sc = by_layer[layer]
        row: dict[str, Any] = {"layer": layer, "neurons": len(sc),
                               "no_firing_test_token": sum(bool(s["no_firing_test_token"]) for s in sc)}
        for m in METHODS:
            for k in ("firing_precision", "firing_recall", "firing_f1", "nonfiring_f1", "correlation"):
                row[f"{m}_{k}"] = _mean(s.get(m, {}).get(k) for s in sc)
        rows.append(row)
    return pd.DataFrame(rows)
