"""The separability probe of the MRI lens: how much category information the region maps keep, as cross-validated
logistic-regression accuracy per layer on the region activations against the same layer's raw pooled neurons."""

from __future__ import annotations

import warnings

import numpy as np

from ...errors import ScanError

__all__ = ["separability"]


def separability(maps, scan, *, cv: int = 5, seed: int = 0, C: float = 0.1, max_iter: int = 2000):
    """How much category information the region maps keep: a cross-validated logistic-regression probe per layer
    on the region activations ``[n_docs, n_regions]`` against the same layer's raw pooled neurons
    ``[n_docs, d_mlp]``.

    Each fold standardises its features and fits the probe on its training documents only (scikit-learn
    ``Pipeline`` inside ``cross_val_score``); folds are stratified and seeded. The probe is L2-regularised logistic
    regression (``C``; liblinear, solved in the dual when there are more features than documents: faster than
    lbfgs at the same or better held-out accuracy, bench/RESULTS.md). Scores are balanced
    accuracy (chance = 1 / n_categories whatever the class sizes). Returns a pandas DataFrame, one row per layer.
    """
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    maps._check_fitted()
    if maps.labels_ is None:
        raise ScanError("the separability probe needs a labelled corpus")
    if scan.n_docs != maps.n_docs_:
        raise ScanError(f"the scan has {scan.n_docs} documents, the maps {maps.n_docs_}: pass the scan they were "
                        "fitted on")
    y = maps.labels_
    counts = np.bincount(y)
    present = counts[counts > 0]
    if len(present) < 2:
        raise ScanError("the separability probe needs at least two categories with documents")
    folds = int(min(cv, present.min()))
    if folds < 2:
        raise ScanError("every category needs at least two documents for a cross-validated probe")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)

    def score(X):
        lr = LogisticRegression(C=C, solver="liblinear", dual=X.shape[1] > X.shape[0], max_iter=max_iter)
        probe = make_pipeline(StandardScaler(), lr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on separable folds
            s = cross_val_score(probe, X, y, cv=splitter, scoring="balanced_accuracy")
        return float(s.mean()), float(s.std())

    rows = []
    for l in maps.layers_:
        li = maps.layer_index(l)
        ra, ra_sd = score(maps.region_act_[li])
        raw, raw_sd = score(scan.pooled(maps.pooling, layer=l).astype(np.float32))
        rows.append({"layer": l, "regions": ra, "regions_sd": ra_sd, "neurons": raw, "neurons_sd": raw_sd,
                     "kept": ra / raw if raw > 0 else np.nan, "chance": 1.0 / len(present),
                     "n_regions": maps.n_regions, "d_mlp": scan.d_mlp, "folds": folds})
    return pd.DataFrame(rows)
