"""Stand-ins for fitted region maps shared by the MRI graph tests (no model, no UMAP): random and hand-built maps,
a per-document brute-force count to check the vectorised one against, and small helpers."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import networkx as nx
import numpy as np

from mri_lens.lenses import mri as mg


@dataclass
class FakeMaps:
    """Stand-in for a fitted RegionMaps: exactly the members the graph consumes."""

    layers: list
    grid: int
    n_docs: int
    labels: np.ndarray | None
    label_names: list | None
    mode: str
    acts: dict  # layer -> bool [n_docs, n_regions]

    @property
    def n_regions(self) -> int:
        return self.grid * self.grid

    def activated(self, layer):
        return self.acts[layer]

    def region_neurons(self, layer, region):
        if self.mode == "documents":
            return np.zeros(0, dtype=np.int64)
        return np.arange(region * 3, region * 3 + (region % 3))  # 0-2 neurons, some regions empty

    def region_activation(self, layer):
        return self.acts[layer].astype(np.float32)


def random_maps(seed=0, n_docs=60, layers=(0, 2, 3), grid=3, n_cats=2, density=0.3, mode="neurons"):
    rng = np.random.default_rng(seed)
    r = grid * grid
    if mode == "documents":  # exactly one region per document
        acts = {l: np.eye(r, dtype=bool)[rng.integers(0, r, n_docs)] for l in layers}
    else:
        acts = {l: rng.random((n_docs, r)) < density for l in layers}
    labels = rng.integers(0, n_cats, n_docs) if n_cats else None
    names = [f"cat{i}" for i in range(n_cats)] if n_cats else None
    return FakeMaps(list(layers), grid, n_docs, labels, names, mode, acts)


def brute_force(maps, cats):
    """Per-document Python loop: node and edge counts, total and per category."""
    names = maps.label_names
    nodes, edges = Counter(), Counter()
    for d in range(maps.n_docs):
        cat = names[maps.labels[d]] if maps.labels is not None else None
        keys = [None] + ([cat] if cat in cats else [])
        for li, layer in enumerate(maps.layers):
            act = np.flatnonzero(maps.activated(layer)[d])
            for r in act:
                for k in keys:
                    nodes[(k, layer, int(r))] += 1
            if li + 1 < len(maps.layers):
                nxt = maps.layers[li + 1]
                for r in act:
                    for s in np.flatnonzero(maps.activated(nxt)[d]):
                        for k in keys:
                            edges[(k, (layer, int(r)), (nxt, int(s)))] += 1
    return nodes, edges


def node_link(g):
    return json.dumps(nx.node_link_data(g, edges="edges"), sort_keys=True)


# ------------------------------------------------------------------------------------------- hand-built


def hand_maps():
    """Two layers, grid 2 (4 regions), 10 documents with a hand-chosen co-activation pattern."""
    rows0 = [[0], [0], [0], [0], [0, 1], [1], [1], [2], [2], [3]]
    rows1 = [[0], [0], [0, 1], [1], [2], [2], [3], [3], [3], [0, 1]]
    a0 = np.zeros((10, 4), bool)
    a1 = np.zeros((10, 4), bool)
    for d, (r0, r1) in enumerate(zip(rows0, rows1)):
        a0[d, r0] = True
        a1[d, r1] = True
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1, 1, 0])
    return FakeMaps([0, 1], 2, 10, labels, ["pos", "neg"], "neurons", {0: a0, 1: a1})


# Untrimmed edges of hand_maps, computed by hand: (source region, target region) -> weight.
HAND = {(0, 0): 3, (0, 1): 2, (0, 2): 1, (1, 2): 2, (1, 3): 1, (2, 3): 2, (3, 0): 1, (3, 1): 1}


def edge_dict(g):
    return {(u[1], v[1]): d["weight"] for u, v, d in g.edges(data=True)}


def hand_graph():
    g = mg.coactivation_graph(hand_maps(), enrichment=True)
    return g


def enriched_regions(maps, labels: np.ndarray, a: str, b: str, alpha: float = 0.05) -> dict[str, int]:
    """Regions of every layer enriched for ``a`` or for ``b`` (labels ``[n_docs]``, category indices into
    ``maps.label_names``), computed with scipy alone: ``scipy.stats.fisher_exact`` on each region's 2 x 2 table of
    activating documents, ``scipy.stats.false_discovery_control`` (Benjamini-Hochberg) over all regions some
    document of ``a`` or ``b`` activates; ``{a: count, b: count}`` of regions with q < ``alpha``."""
    from scipy import stats

    in_a, in_b = labels == maps.label_names.index(a), labels == maps.label_names.index(b)
    pvals, direction = [], []
    for l in maps.layers:
        act = maps.activated(l)
        for r in range(maps.n_regions):
            ka, kb = int(act[in_a, r].sum()), int(act[in_b, r].sum())
            if ka + kb == 0:
                continue
            table = [[ka, int(in_a.sum()) - ka], [kb, int(in_b.sum()) - kb]]
            pvals.append(stats.fisher_exact(table).pvalue)
            direction.append(a if ka / in_a.sum() > kb / in_b.sum() else b)
    found = {a: 0, b: 0}
    for q, d in zip(stats.false_discovery_control(pvals), direction):
        if q < alpha:
            found[d] += 1
    return found


def relabelled(maps, labels: np.ndarray):
    """A shallow copy of fitted region maps with other labels ``[n_docs]`` (the same regions and activations)."""
    import copy

    out = copy.copy(maps)
    out.labels_ = np.asarray(labels, dtype=np.int64)
    return out


def shuffled_labels(maps, seed: int = 0) -> np.ndarray:
    """The maps' labels in a random order ``[n_docs]``: the same category sizes, no relation to the documents."""
    return np.random.default_rng(seed).permutation(maps.labels)
