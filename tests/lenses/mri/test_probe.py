"""The separability probe, on the planted code-vs-prose structure of the tiny LM's scan."""

from __future__ import annotations

from scipy import stats

from mri_lens.lenses.mri.probe import separability


def test_planted_structure_code_vs_prose(tiny_maps, tiny_scan):
    """Code and prose documents activate different regions (Fisher's exact test, BH), and the region activations
    keep enough to separate them well above chance."""
    m = tiny_maps
    code = m.labels == m.label_names.index("code")
    found = {"code": 0, "prose": 0}
    pvals, direction = [], []
    for l in m.layers:
        act = m.activated(l)
        for r in range(m.n_regions):
            a, b = int(act[code, r].sum()), int(act[~code, r].sum())
            if a + b == 0:
                continue
            table = [[a, code.sum() - a], [b, (~code).sum() - b]]
            pvals.append(stats.fisher_exact(table).pvalue)
            direction.append("code" if a > b else "prose")
    q = stats.false_discovery_control(pvals)
    for qi, d in zip(q, direction):
        if qi < 0.05:
            found[d] += 1
    assert found["code"] >= 1 and found["prose"] >= 1, found
    probe = separability(m, tiny_scan, cv=4, seed=0)
    assert list(probe["layer"]) == m.layers
    assert (probe["regions"] >= 0.85).all(), probe
    assert (probe["chance"] == 0.5).all()
