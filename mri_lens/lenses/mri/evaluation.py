"""Full against reduced: how much category information a layer keeps after the region maps' reduction, as the
scores of one classifier trained on the layer's pooled activations and on its reduced features, over the same
repeated stratified train/test splits (after LLM-MRI's ``Evaluation.evaluate_model``).

Like for like by default: each mapped layer's pooled activations against that same layer's reduced features.
LLM-MRI compares the LAST layer's activations against EVERY layer's reduced features side by side;
``concatenated=True`` adds that comparison as one extra row, ``"all"``, labelled as the reference's.
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ...errors import CategoryError, ScanError, ScanFileError
from ...storage.write import load_dir, save_dir

__all__ = ["ReductionEvaluation", "evaluate_reduction", "METRICS", "EVAL_FORMAT", "EVAL_SCHEMA"]

METRICS = ("f1_macro", "f1_weighted", "recall_macro", "recall_weighted", "accuracy", "balanced_accuracy")
EVAL_FORMAT = "mri_lens.reduction_evaluation"
EVAL_SCHEMA = 1
ALL = "all"
SAME_LAYER = "same layer"
REFERENCE = "reference: last layer full vs all layers reduced"


@dataclass
class ReductionEvaluation:
    """Scores of a classifier on full and reduced features of each mapped layer (see :func:`evaluate_reduction`).

    Attributes
    ----------
    rows: the compared rows: model layer numbers, then ``"all"`` (the reference's comparison) when asked for.
    metrics: scikit-learn scorer names ``[n_metrics]``.
    full, reduced: scores per split ``[n_rows, n_metrics, n_splits]`` (float64).
    train_idx, test_idx: document indices of every split ``[n_splits, n_train]`` / ``[n_splits, n_test]``, the
        same for every row and both feature sets.
    n_features: features of the full and the reduced input of each row ``[n_rows, 2]``.
    params: the evaluation's parameters and what it read (pooling, mode, reducer, categories, documents).
    table: one row per row x metric: ``layer``, ``metric``, ``comparison``, ``full_mean``, ``full_sd``,
        ``reduced_mean``, ``reduced_sd``, ``delta_mean``, ``delta_sd`` (delta = full - reduced, split by split),
        ``n_splits``, ``full_features``, ``reduced_features``. SDs are sample SDs over the splits (NaN with one).
    """

    rows: list
    metrics: list[str]
    full: np.ndarray
    reduced: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    n_features: np.ndarray
    params: dict[str, Any]
    table: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.table = _summary_table(self)

    @property
    def per_split(self) -> dict[str, np.ndarray]:
        """``{"full", "reduced", "delta"}`` -> scores per split ``[n_rows, n_metrics, n_splits]``."""
        return {"full": self.full, "reduced": self.reduced, "delta": self.full - self.reduced}

    def splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The ``(train, test)`` document indices of every split, as scikit-learn's ``split`` yields them."""
        return list(zip(self.train_idx, self.test_idx))

    def to_pandas(self):
        """The summary table (a copy of :attr:`table`)."""
        return self.table.copy()

    def figure(self, metric: str = "balanced_accuracy"):
        """Plotly figure of ``metric``: full and reduced scores per row with error bars (SD over splits) above,
        their difference (full - reduced) below."""
        return _figure(self, metric)

    def __repr__(self) -> str:
        p = self.params
        return (f"ReductionEvaluation({len(self.rows)} rows x {len(self.metrics)} metrics, {p['n_splits']} splits, "
                f"{p['mode']} mode, {p['reducer']} reducer)")

    def _repr_html_(self) -> str:
        head = html.escape(repr(self))
        body = self.table.to_html(index=False, float_format=lambda v: f"{v:.4f}")
        return f"<h4>{head}</h4>{body}"

    def save(self, path, *, overwrite: bool = False) -> str:
        """Write to directory ``path`` atomically (safetensors arrays + JSON manifest). Returns the absolute path."""
        return save_evaluation(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path) -> ReductionEvaluation:
        """Read a directory written by :meth:`save` (validated; :class:`~mri_lens.errors.ScanFileError`
        otherwise)."""
        return load_evaluation(cls, path)


def evaluate_reduction(scan, maps, *, n_splits: int = 5, test_size: float = 0.3, seed: int = 42,
                       metrics: Sequence[str] | str | None = None, max_iter: int = 1000, concatenated: bool = False,
                       n_jobs: int | None = -1, progress: bool = True) -> ReductionEvaluation:
    """How much category information the maps' reduction keeps, layer by layer: one classifier (standardised
    features, then logistic regression with ``max_iter`` and ``random_state=seed``) trained and scored on the
    full and on the reduced features of each mapped layer, over ``n_splits`` stratified shuffle splits holding out
    ``test_size`` of the documents (scikit-learn's ``StratifiedShuffleSplit`` with ``random_state=seed``, drawn
    once from the labels and shared by every layer and both feature sets). Defaults are LLM-MRI's.

    - full: the layer's pooled activations ``scan.pooled(maps.pooling, layer=l)`` ``[n_docs, width]``;
    - reduced, documents mode: the map's coordinates ``maps.coordinates(l)`` ``[n_docs, n_components]``;
    - reduced, neurons mode (a grid is needed): the region activations ``maps.region_activation(l)``
      ``[n_docs, n_regions]``, the documents' features a neurons map gives.

    ``concatenated=True`` adds the row ``"all"``: LLM-MRI's own comparison, the last mapped layer's pooled
    activations against every mapped layer's reduced features side by side (not like for like).

    ``metrics``: scikit-learn scorer names (default :data:`METRICS`). ``n_jobs``: worker processes, one
    (layer, features) cross-validation each (-1: one per core; 1: in this process); the scores do not depend on
    it. Raises
    :class:`~mri_lens.errors.ScanError` for an unlabelled scan or maps of another scan,
    :class:`~mri_lens.errors.CategoryError` for fewer than two categories or a category too small to split.
    """
    metrics = _check_metrics(metrics)
    y = _labels(scan, maps)
    train, test = _splits(y, n_splits, test_size, seed)
    layers = list(maps.layers)
    rows: list = layers + ([ALL] if concatenated else [])
    full = np.zeros((len(rows), len(metrics), len(train)))
    reduced = np.zeros_like(full)
    n_features = np.zeros((len(rows), 2), np.int64)
    fit = (y, train, test, metrics, max_iter, seed)
    for i, side, scores, width in _run(_tasks(scan, maps, layers, concatenated), fit, n_jobs, progress,
                                       2 * len(layers) + concatenated):
        (full if side == 0 else reduced)[i] = scores
        n_features[i, side] = width
    if concatenated:  # the reference's full side is the last layer's, already scored on the same splits
        full[-1], n_features[-1, 0] = full[len(layers) - 1], n_features[len(layers) - 1, 0]
    params = {"n_splits": int(n_splits), "test_size": float(test_size), "seed": int(seed),
              "max_iter": int(max_iter), "concatenated": bool(concatenated), "pooling": maps.pooling,
              "mode": maps.mode, "reducer": maps.reducer,
              "n_components": int(maps.n_components), "n_docs": int(len(y)),
              "label_names": list(scan.label_names),
              "classifier": "StandardScaler + LogisticRegression(lbfgs)"}
    return ReductionEvaluation(rows, metrics, full, reduced, train, test, n_features, params)


# ---------------------------------------------------------------------------------------------- inputs
def _check_metrics(metrics) -> list[str]:
    from sklearn.metrics import get_scorer_names

    metrics = list(METRICS) if metrics is None else [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics or len(set(metrics)) != len(metrics):
        raise ValueError("metrics must name at least one scorer, each once")
    unknown = [m for m in metrics if m not in get_scorer_names()]
    if unknown:
        raise ValueError(f"unknown scikit-learn scorer(s) {unknown}; for example {list(METRICS)}")
    return metrics


def _labels(scan, maps) -> np.ndarray:
    """The scan's labels ``[n_docs]`` (int64), checked against the maps and for at least two categories."""
    if scan.labels is None:
        raise ScanError("evaluate_reduction needs a labelled scan (a corpus with labels)")
    y = np.asarray(scan.labels, np.int64)
    if len(y) != maps.n_docs:
        raise ScanError(f"the scan has {len(y)} documents, the maps {maps.n_docs}: pass the scan they were fitted on")
    if maps.labels is not None and not np.array_equal(np.asarray(maps.labels), y):
        raise ScanError("the maps' labels differ from the scan's: pass the scan they were fitted on")
    counts = np.bincount(y)
    if np.count_nonzero(counts) < 2:
        raise CategoryError("evaluate_reduction needs at least two categories with documents")
    return y


def _splits(y: np.ndarray, n_splits: int, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices of ``n_splits`` stratified shuffle splits ``[n_splits, n_train]``,
    ``[n_splits, n_test]``."""
    from sklearn.model_selection import StratifiedShuffleSplit

    counts = np.bincount(y)
    small = counts[counts > 0].min()
    if small < 2:
        raise CategoryError("every category needs at least two documents to appear on both sides of a split")
    sss = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed)
    try:
        pairs = list(sss.split(np.zeros((len(y), 1)), y))
    except ValueError as e:  # a test or train side smaller than the number of categories
        raise CategoryError(f"these documents cannot be split with test_size={test_size}: {e}") from None
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _full_features(scan, maps, layer: int) -> np.ndarray:
    """The layer's pooled activations ``[n_docs, width]`` in double precision."""
    return np.asarray(scan.pooled(maps.pooling, layer=layer), np.float64)


def _reduced_features(maps, layer: int) -> np.ndarray:
    """The documents' reduced features of the layer ``[n_docs, k]`` (see :func:`evaluate_reduction`)."""
    if maps.mode == "documents":
        return np.asarray(maps.coordinates(layer), np.float64)
    if not maps.has_grid:
        raise ScanError("neurons-mode maps without a grid (n_components > 2) give documents no reduced features; "
                        "fit documents-mode maps, or a 2-component neurons map, to evaluate the reduction")
    return np.asarray(maps.region_activation(layer), np.float64)


def _tasks(scan, maps, layers: list[int], concatenated: bool):
    """``(row, side, features)`` to score, one layer in memory at a time: each layer's full (side 0) and reduced
    (side 1) features, then the reduced features of every layer side by side (the ``"all"`` row)."""
    kept = []
    for i, layer in enumerate(layers):
        xr = _reduced_features(maps, layer)
        if concatenated:
            kept.append(xr)
        yield i, 0, _full_features(scan, maps, layer)
        yield i, 1, xr
    if concatenated:
        yield len(layers), 1, np.concatenate(kept, axis=1)


def _task(i: int, side: int, X: np.ndarray, fit: tuple) -> tuple[int, int, np.ndarray, int]:
    return i, side, _scores(X, *fit), X.shape[1]


def _run(tasks, fit: tuple, n_jobs: int | None, progress: bool, n_tasks: int):
    """Every task's ``(row, side, scores [n_metrics, n_splits], n_features)``, in this process or in joblib's
    reusable loky workers (processes: lbfgs spends most of its time in Python, which threads would serialise)."""
    from tqdm.auto import tqdm

    from .embedding import _n_workers

    n = _n_workers(n_jobs, n_tasks)
    if n <= 1:
        results = (_task(i, side, X, fit) for i, side, X in tasks)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n, backend="loky", return_as="generator", pre_dispatch="2*n_jobs")(
            delayed(_task)(i, side, X, fit) for i, side, X in tasks)
    return tqdm(results, total=n_tasks, desc="full vs reduced", unit="fit", disable=not progress)


def _scores(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, metrics: list[str],
            max_iter: int, seed: int) -> np.ndarray:
    """Test scores of the classifier on every split ``[n_metrics, n_splits]``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    with warnings.catch_warnings():
        # lbfgs stopping at max_iter on wide, separable folds still scores the model it has, as the reference does
        warnings.simplefilter("ignore", ConvergenceWarning)
        cv = cross_validate(pipe, X, y, cv=list(zip(train, test)), scoring={m: m for m in metrics})
    return np.stack([np.asarray(cv[f"test_{m}"], np.float64) for m in metrics])


# ---------------------------------------------------------------------------------------------- table, figure
def _sd(a: np.ndarray) -> np.ndarray:
    """Sample SD over the last axis (NaN with a single split)."""
    if a.shape[-1] < 2:
        return np.full(a.shape[:-1], np.nan)
    return a.std(axis=-1, ddof=1)


def _summary_table(ev: ReductionEvaluation):
    import pandas as pd

    delta = ev.full - ev.reduced
    recs = []
    for i, row in enumerate(ev.rows):
        for j, m in enumerate(ev.metrics):
            recs.append({"layer": row, "metric": m, "comparison": REFERENCE if row == ALL else SAME_LAYER,
                         "full_mean": ev.full[i, j].mean(), "full_sd": _sd(ev.full[i, j]),
                         "reduced_mean": ev.reduced[i, j].mean(), "reduced_sd": _sd(ev.reduced[i, j]),
                         "delta_mean": delta[i, j].mean(), "delta_sd": _sd(delta[i, j]),
                         "n_splits": ev.full.shape[2], "full_features": int(ev.n_features[i, 0]),
                         "reduced_features": int(ev.n_features[i, 1])})
    return pd.DataFrame(recs)


def _figure(ev: ReductionEvaluation, metric: str):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if metric not in ev.metrics:
        raise ValueError(f"metric {metric!r} was not evaluated; these were {ev.metrics}")
    t = ev.table[ev.table["metric"] == metric]
    x = [f"{ALL} (reference)" if r == ALL else f"layer {r}" for r in t["layer"]]
    name = html.escape(metric)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=(f"{name}: full vs reduced", "delta (full - reduced)"))
    for kind, colour in (("full", "#1f77b4"), ("reduced", "#ff7f0e")):
        fig.add_trace(go.Scatter(x=x, y=t[f"{kind}_mean"], mode="lines+markers", name=kind,
                                 line=dict(color=colour), error_y=dict(type="data", array=t[f"{kind}_sd"]),
                                 hovertemplate=f"%{{x}}<br>{kind} {name} %{{y:.3f}}<extra></extra>"), 1, 1)
    fig.add_trace(go.Bar(x=x, y=t["delta_mean"], name="delta", marker_color="#7f7f7f",
                         error_y=dict(type="data", array=t["delta_sd"]),
                         hovertemplate=f"%{{x}}<br>delta {name} %{{y:.3f}}<extra></extra>"), 2, 1)
    fig.add_hline(y=0, line_width=1, line_color="black", row=2, col=1)
    fig.update_yaxes(title_text=name, row=1, col=1)
    fig.update_yaxes(title_text="full - reduced", row=2, col=1)
    fig.update_layout(height=520, title=f"Full vs reduced features, {ev.full.shape[2]} splits "
                                        "(error bars: SD over splits)")
    return fig


# ---------------------------------------------------------------------------------------------- files
def save_evaluation(ev: ReductionEvaluation, path, *, overwrite: bool = False) -> str:
    """Write ``ev`` to directory ``path`` (see :meth:`ReductionEvaluation.save`)."""
    arrays = {"full": ev.full, "reduced": ev.reduced, "train_idx": ev.train_idx.astype(np.int64),
              "test_idx": ev.test_idx.astype(np.int64), "n_features": ev.n_features.astype(np.int64)}
    meta = {"rows": [r if r == ALL else int(r) for r in ev.rows], "metrics": list(ev.metrics),
            "params": ev.params}
    return save_dir(path, fmt=EVAL_FORMAT, schema=EVAL_SCHEMA, arrays=arrays, meta=meta, overwrite=overwrite)


def _check_loaded(rows, metrics, params, a: dict[str, np.ndarray]) -> None:
    """The manifest and arrays agree with what :func:`save_evaluation` writes (``ValueError`` naming the first
    that does not)."""
    if not isinstance(rows, list) or not all(r == ALL or (isinstance(r, int) and not isinstance(r, bool))
                                             for r in rows):
        raise ValueError("rows")
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise ValueError("metrics")
    if not isinstance(params, dict):
        raise ValueError("params")
    shape = (len(rows), len(metrics), a["train_idx"].shape[0])
    if a["full"].shape != shape or a["reduced"].shape != shape:
        raise ValueError("score shapes")
    if a["test_idx"].ndim != 2 or a["test_idx"].shape[0] != shape[2] or a["n_features"].shape != (len(rows), 2):
        raise ValueError("split or feature shapes")


def load_evaluation(cls, path) -> ReductionEvaluation:
    """Read a directory written by :func:`save_evaluation` into a ``cls``."""
    arrays, meta, _ = load_dir(path, fmt=EVAL_FORMAT, schema=EVAL_SCHEMA)
    try:
        rows, metrics, params = meta["rows"], meta["metrics"], meta["params"]
        a = {k: arrays[k] for k in ("full", "reduced", "train_idx", "test_idx", "n_features")}
        _check_loaded(rows, metrics, params, a)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ScanFileError(f"{path} is not a consistent saved reduction evaluation: {type(e).__name__} {e}") from None
    return cls(rows, metrics, a["full"].astype(np.float64), a["reduced"].astype(np.float64), a["train_idx"],
               a["test_idx"], a["n_features"], params)
