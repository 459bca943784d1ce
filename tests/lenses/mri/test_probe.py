"""The separability probe and enrichment, on the planted code-vs-prose structure of the tiny LM."""

from __future__ import annotations

from mri_lens.lenses.mri.probe import separability

from .builders import enriched_regions, relabelled, shuffled_labels


def test_planted_structure_code_vs_prose(planted_maps, planted_scan):
    """Code and prose documents activate different regions (Fisher's exact test, BH over every region of every
    layer), which labels shuffled over the same documents do not; and the region activations keep enough to
    separate the two categories well above chance, which shuffled labels again do not."""
    m = planted_maps
    found = enriched_regions(m, m.labels, "code", "prose")
    assert found["code"] >= 5 and found["prose"] >= 5, found
    null = enriched_regions(m, shuffled_labels(m), "code", "prose")
    assert sum(null.values()) <= 1, null
    probe = separability(m, planted_scan, cv=4, seed=0)
    assert list(probe["layer"]) == m.layers
    assert (probe["regions"] >= 0.85).all(), probe
    assert (probe["chance"] == 0.5).all()
    shuffled = separability(relabelled(m, shuffled_labels(m)), planted_scan, cv=4, seed=0)
    assert (shuffled["regions"] <= 0.75).all(), shuffled
