"""Scoring fitted graphs on held-out text, against token-lookup and n-gram-lookup baselines.

Protocol (the paper's, with the field's later scores added): the held-out top examples are run in full; a token
*fires* when its normalised activation is >= ``firing_threshold`` (0.5), in truth and in prediction. Precision,
recall and F1 are computed for firing and for non-firing tokens per neuron (the paper's scores). The simulation
correlation (automated interpretability) between predicted and true normalised activations is pooled over the
held-out top examples plus as many random corpus documents (firing on ordinary text is penalised there). Detection
(delphi-style): held-out contexts, each labelled by whether the neuron fires in it, against whether the explanation
fires in it: balanced accuracy and ROC AUC (scikit-learn). A neuron with no firing held-out token has undefined
firing recall and F1: it is counted (``no_firing_test_token``), never silently dropped.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np

__all__ = ["TokenLookup", "NgramLookup", "detection", "evaluate", "evaluation_of", "prf", "score_activations",
           "summary_table", "SCORE_COLUMNS"]

METHODS = ("n2g", "token", "ngram")
# The per-explainer scores of the tables (per neuron and per layer).
SCORE_COLUMNS = ("firing_precision", "firing_recall", "firing_f1", "nonfiring_f1", "correlation",
                 "detection_balanced_accuracy", "detection_auc")


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


def detection(true_max: np.ndarray, pred_max: np.ndarray, threshold: float = 0.5) -> dict[str, float | None]:
    """Detection scores over contexts: does the explanation fire where the neuron does?

    Parameters
    ----------
    true_max: ``[n_contexts]`` the neuron's max normalised activation in each context; a context is labelled
        firing when it is ``>= threshold``.
    pred_max: ``[n_contexts]`` the explanation's max predicted activation in each context: it predicts firing when
        ``>= threshold`` (balanced accuracy) and ranks contexts by it (ROC AUC).

    Returns
    -------
    ``detection_balanced_accuracy`` and ``detection_auc`` (scikit-learn's), None when the contexts hold only one
    label (both are undefined then); ``detection_contexts`` and ``detection_firing_contexts`` (counts).
    """
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    y = np.asarray(true_max, dtype=np.float64) >= threshold
    score = np.asarray(pred_max, dtype=np.float64)
    both = 0 < int(y.sum()) < len(y)
    return {"detection_balanced_accuracy": float(balanced_accuracy_score(y, score >= threshold)) if both else None,
            "detection_auc": float(roc_auc_score(y, score)) if both else None,
            "detection_contexts": float(len(y)), "detection_firing_contexts": float(y.sum())}


def _context_max(values: np.ndarray, lens: Sequence[int]) -> np.ndarray:
    """Max of ``values`` ``[sum(lens)]`` within each consecutive run of ``lens`` (an empty run: -inf)."""
    out = np.full(len(lens), -np.inf)
    offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    for i in range(len(lens)):
        if lens[i]:
            out[i] = float(np.max(values[offs[i]:offs[i + 1]]))
    return out


class _GraphPredictor:
    def __init__(self, graph: Any):
        self.graph = graph

    def predict(self, ids: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
        return self.graph.predict_ids(ids, starts)


def _texts(seqs: Sequence[Sequence[int]], acts: Sequence[np.ndarray], norm: float):
    """``(ids [n], starts [n], normalised truth [n], lengths)`` of several texts."""
    ids, starts = _concat(seqs)
    true = np.concatenate([np.asarray(a, np.float64) for a in acts]) / norm if len(seqs) else np.zeros(0)
    return ids, starts, true, [len(t) for t in seqs]


def score_activations(graph: Any, test: Sequence[Sequence[int]], test_acts: Sequence[np.ndarray],
                      random: Sequence[Sequence[int]] = (), random_acts: Sequence[np.ndarray] = (),
                      train: Sequence[Sequence[int]] | None = None,
                      train_acts: Sequence[np.ndarray] | None = None,
                      contexts: Sequence[Sequence[int]] | None = None,
                      context_acts: Sequence[np.ndarray] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scores of ``graph`` (and of the baselines when ``train`` is given) from true activations.

    Parameters
    ----------
    test, random, train, contexts: texts as token ids (no special tokens); ``*_acts`` their true activations
        ``[len(text)]`` (raw: divided by ``graph.max_activation`` here).
    test: held-out top examples (firing P/R/F1; with ``random``, the simulation correlation).
    contexts: the detection contexts (default: the test and random texts, each one context).

    Returns
    -------
    ``(scores, evaluation)``: ``scores`` ``{explainer: {score: value}}`` for ``"n2g"`` (and ``"token"``,
    ``"ngram"``): ``firing_precision/recall/f1``, ``nonfiring_precision/recall/f1``, ``correlation`` (predicted
    against true activations pooled over the test and random texts: the simulation score), ``random_firing_rate``,
    ``detection_balanced_accuracy``, ``detection_auc`` (:func:`detection`); N2G's also ``loses_to_token_lookup``
    (1.0 when token lookup's firing F1 is higher). ``evaluation``: the counts behind them and ``winner`` (the
    explainer with the highest firing F1).
    """
    norm, thr = graph.max_activation, graph.config.firing_threshold
    tid, tst, ttrue, _ = _texts(test, test_acts, norm)
    rid, rst, rtrue, _ = _texts(random, random_acts, norm)
    if contexts is None:
        contexts, context_acts = list(test) + list(random), list(test_acts) + list(random_acts)
    cid, cst, ctrue, clens = _texts(contexts, context_acts, norm)
    predictors: dict[str, Any] = {"n2g": _GraphPredictor(graph)}
    if train is not None and train_acts is not None and len(train):
        tr_acts = [np.asarray(a, np.float64) / norm for a in train_acts]
        predictors["token"] = TokenLookup().fit(train, tr_acts)
        predictors["ngram"] = NgramLookup(graph.config.ngram).fit(train, tr_acts)
    n_fire = int(np.sum(ttrue >= thr))
    scores: dict[str, Any] = {}
    for name, pr in predictors.items():
        tp, rp = pr.predict(tid, tst), pr.predict(rid, rst)
        s = prf(ttrue, tp, thr)
        s["correlation"] = _corr(np.concatenate([ttrue, rtrue]), np.concatenate([tp, rp]))
        s["random_firing_rate"] = float(np.mean(rp >= thr)) if len(rp) else None
        d = detection(_context_max(ctrue, clens), _context_max(pr.predict(cid, cst), clens), thr)
        s["detection_balanced_accuracy"], s["detection_auc"] = d["detection_balanced_accuracy"], d["detection_auc"]
        scores[name] = s
    evaluation: dict[str, Any] = {
        "n_test_texts": len(test), "n_random_texts": len(random), "n_test_tokens": int(len(tid)),
        "n_random_tokens": int(len(rid)), "n_firing_test_tokens": n_fire, "no_firing_test_token": n_fire == 0,
        "firing_threshold": thr, "n_contexts": len(contexts),
        "n_firing_contexts": int(d["detection_firing_contexts"]), "winner": _winner(scores)}
    if "token" in scores:
        a, b = scores["n2g"]["firing_f1"], scores["token"]["firing_f1"]
        scores["n2g"]["loses_to_token_lookup"] = None if a is None or b is None else float(a < b)
    return scores, evaluation


def _winner(scores: dict[str, Any]) -> str | None:
    """The explainer with the highest firing F1 (N2G on ties), None when no F1 is defined."""
    best = [(v["firing_f1"], -i, k) for i, (k, v) in enumerate(scores.items()) if v.get("firing_f1") is not None]
    return max(best)[2] if best else None


def _as_texts(x: Any, adapter: Any) -> list[tuple[int, ...]]:
    from .neuron_graph import example_prompts

    return [p.ids for p in example_prompts(x, adapter)]


def evaluate(graph: Any, model: Any, test: Any = None, random: Any = None, *, baselines: bool = True,
             contexts: Any = None, backend: Any = None) -> dict[str, Any]:
    """Score a fitted graph on held-out text (and the baselines on the same splits); stored in ``graph.scores``
    (the counts behind the scores in ``graph.meta["evaluation"]``).

    Parameters
    ----------
    graph: a fitted :class:`~mri_lens.lenses.n2g.NeuronGraph`.
    model: the analysed model.
    test: held-out top examples (default: the examples the fit held out): TopExamples, texts or token-id lists.
    random: random corpus texts (or token-id lists) for the pooled correlation; the paper's protocol uses as many
        as there are test examples. Without them the correlation uses the test examples only.
    baselines: also fit and score token lookup and n-gram lookup on the graph's training examples.
    contexts: texts (or token-id lists) for the detection score, each labelled by whether the neuron fires in it
        (default: the test and random texts). :func:`~mri_lens.lenses.n2g.explain_layer` draws them from the
        scan's quantile bands plus non-activating documents.

    Returns
    -------
    ``{"n2g": {...}, "token": {...}, "ngram": {...}}`` (see :func:`score_activations`).
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
    ctx_ids = _as_texts(contexts, adapter) if contexts is not None else []
    run = Forward(adapter, get_backend(adapter, backend, fused_activations=True), graph.layer,
                  graph.config.max_batch_tokens)
    acts = run([(s, graph.neuron) for s in test_ids + rand_ids + train_ids + ctx_ids])
    a, b, c = len(test_ids), len(test_ids) + len(rand_ids), len(test_ids) + len(rand_ids) + len(train_ids)
    graph.scores, graph.meta["evaluation"] = score_activations(
        graph, test_ids, acts[:a], rand_ids, acts[a:b], train_ids or None, acts[b:c] if train_ids else None,
        ctx_ids if contexts is not None else None, acts[c:] if contexts is not None else None)
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


def evaluation_of(g: Any) -> dict[str, Any]:
    """The counts behind a graph's scores (``meta["evaluation"]``; graphs saved before it kept them in
    ``scores``)."""
    ev = (g.meta or {}).get("evaluation")
    if ev is not None:
        return ev
    return {k: v for k, v in (g.scores or {}).items() if k not in METHODS}


def summary_table(graphs: Any):
    """Per-layer means (over neurons with a defined value) like the paper's table: a pandas DataFrame.

    ``graphs``: neuron graphs, or what :func:`~mri_lens.lenses.n2g.explain_layer` returns (``{neuron: graph}``), a
    ``{(layer, neuron): graph}`` mapping, or several of those (one per layer). Columns per method (``n2g``,
    ``token``, ``ngram``): :data:`SCORE_COLUMNS` (firing precision / recall / F1, non-firing F1, the simulation
    correlation, detection balanced accuracy and AUC); plus the number of neurons, of neurons with no firing
    held-out token and of neurons whose N2G firing F1 is below token lookup's. Graphs never scored are left out.
    """
    import pandas as pd

    by_layer: dict[int, list[Any]] = {}
    for g in _graphs_of(graphs):
        if g.scores:
            by_layer.setdefault(g.layer, []).append(g)
    rows = []
    for layer in sorted(by_layer):
        gs = by_layer[layer]
        row: dict[str, Any] = {"layer": layer, "neurons": len(gs),
                               "no_firing_test_token": sum(bool(evaluation_of(g).get("no_firing_test_token"))
                                                           for g in gs),
                               "loses_to_token_lookup": sum(bool(g.scores.get("n2g", {}).get("loses_to_token_lookup"))
                                                            for g in gs)}
        for m in METHODS:
            for k in SCORE_COLUMNS:
                row[f"{m}_{k}"] = _mean(g.scores.get(m, {}).get(k) for g in gs)
        rows.append(row)
    return pd.DataFrame(rows)
