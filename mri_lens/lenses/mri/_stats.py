"""Statistics shared by the MRI lens, pure numpy/scipy: Benjamini-Hochberg q-values, the hypergeometric pmf and
the one-sided (upper tail) and two-sided Fisher exact tests computed vectorised, edge-set overlap and weight
correlations of two categories, and Welch's t-test with Cohen's d per column. No graph, map or scan here: arrays
in, arrays out."""

from __future__ import annotations

import numpy as np

__all__: list[str] = []  # private helpers of mri_lens.lenses.mri


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of the p-values ``p`` ``[n] -> [n]`` (``scipy.stats.false_discovery_control``)."""
    from scipy import stats

    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    return stats.false_discovery_control(p, method="bh")


def _log_choose(a, b):
    from scipy.special import gammaln

    return gammaln(a + 1.0) - gammaln(b + 1.0) - gammaln(a - b + 1.0)


def _hypergeom_pmf(m: int, n: int, t: int) -> tuple[int, np.ndarray]:
    """Support start and pmf [support] of the number of category documents among ``t`` drawn from ``m`` documents
    of which ``n`` are of the category. Log-gamma based: scipy's ``hypergeom.pmf``/``sf`` are exact but take
    milliseconds per value at corpus sizes (its ``sf`` loops in Python over the values)."""
    lo, hi = max(0, t - (m - n)), min(n, t)
    x = np.arange(lo, hi + 1, dtype=np.float64)
    logp = _log_choose(n, x) + _log_choose(m - n, t - x) - _log_choose(m, t)
    return lo, np.exp(logp)


def _upper_tail(k: np.ndarray, n_total: int, n_cat: int, k_total: np.ndarray) -> np.ndarray:
    """One-sided Fisher exact p-values (alternative='greater'): P(X >= k), X ~ Hypergeom(n_total, n_cat, k_total).

    The pmf is computed once per distinct ``k_total`` (the category size and corpus size are shared by all rows).
    """
    k = np.asarray(k, dtype=np.int64)
    k_total = np.asarray(k_total, dtype=np.int64)
    p = np.ones(len(k), dtype=np.float64)
    for t in np.unique(k_total):
        idx = np.flatnonzero(k_total == t)
        lo, pmf = _hypergeom_pmf(n_total, n_cat, int(t))
        tail = np.cumsum(pmf[::-1])[::-1]  # tail[i] = P(X >= lo + i), summed from the small end
        i = k[idx] - lo
        p[idx] = np.where(i <= 0, 1.0, tail[np.clip(i, 0, len(tail) - 1)])
    return np.clip(p, 0.0, 1.0)


def _fisher_two_sided(k: np.ndarray, total: np.ndarray, n_a: int, n_b: int) -> np.ndarray:
    """Two-sided Fisher exact p-values of the tables [[k, n_a - k], [total - k, n_b - total + k]], vectorised.

    Same definition as ``scipy.stats.fisher_exact``: the sum of the probabilities of all tables with these margins
    that are no more likely than the observed one (relative tolerance 1e-14), 1 when the observed table is the
    mode (agrees with it to about 1e-10 relative). The row margins are shared by every table, so the
    hypergeometric pmf is computed once per distinct column margin ``total``.
    """
    k = np.asarray(k, dtype=np.int64)
    total = np.asarray(total, dtype=np.int64)
    p = np.ones(len(k), dtype=np.float64)
    for t in np.unique(total):
        idx = np.flatnonzero(total == t)
        lo, pmf = _hypergeom_pmf(n_a + n_b, n_a, int(t))
        pexact = pmf[k[idx] - lo]
        srt = np.sort(pmf)
        csum = np.cumsum(srt)
        j = np.searchsorted(srt, pexact * (1 + 1e-14), side="right")
        pv = np.where(j > 0, csum[np.maximum(j - 1, 0)], 0.0)
        pmode = pmf.max()
        with np.errstate(invalid="ignore", divide="ignore"):
            at_mode = np.abs(pexact - pmode) / np.maximum(pexact, pmode) <= 1e-14
        pv[at_mode] = 1.0
        p[idx] = np.minimum(pv, 1.0)
    return p


def _pair_stats(wa: np.ndarray, wb: np.ndarray) -> dict:
    """Edge-set Jaccard (edges a category's documents use) and weight correlations on the union of those edges."""
    from scipy import stats

    a, b = wa > 0, wb > 0
    union = a | b
    n_union = int(union.sum())
    out = {"edges_a": int(a.sum()), "edges_b": int(b.sum()), "edges_union": n_union,
           "jaccard": float((a & b).sum() / n_union) if n_union else float("nan"),
           "pearson": float("nan"), "spearman": float("nan")}
    x, y = wa[union].astype(np.float64), wb[union].astype(np.float64)
    if n_union >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
        out["pearson"] = float(stats.pearsonr(x, y)[0])
        out["spearman"] = float(stats.spearmanr(x, y)[0])
    return out


def _welch_cohen(xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two samples ``[n_a, d]`` and ``[n_b, d]`` (float64) compared column by column: the two means ``[d]``,
    Cohen's d ``[d]`` with the pooled SD ``sqrt(((n_a - 1) var_a + (n_b - 1) var_b) / (n_a + n_b - 2))`` (variances
    with ddof 1; d is 0 where that SD is 0) and Welch's t-test p-value ``[d]``
    (``scipy.stats.ttest_ind(equal_var=False)``, two-sided; 1 where it is undefined)."""
    from scipy import stats

    ma, mb = xa.mean(0), xb.mean(0)
    va, vb = xa.var(0, ddof=1), xb.var(0, ddof=1)
    na, nb = len(xa), len(xb)
    sd = np.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(sd > 0, (ma - mb) / sd, 0.0)
        p = stats.ttest_ind(xa, xb, axis=0, equal_var=False).pvalue
    p = np.where(np.isfinite(p), p, 1.0)
    return ma, mb, d, p
