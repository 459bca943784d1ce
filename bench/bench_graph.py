"""Co-activation graph benchmark: vectorised construction against a per-document Python loop, in one process.

    python bench/bench_graph.py                       # 10,000 docs x 12 layers x 100 regions, 2 categories
    python bench/bench_graph.py --docs 2000 --rounds 1
    python bench/bench_graph.py --stages              # also time enrich / figure / metrics / compare once

Three pairs of contenders: counting only (node and edge counts per category), the whole untrimmed graph, and the
graph trimmed to the 5 heaviest edges per node (``top_edges=5``; the loop trims in Python with the same rule).
The loop is the straightforward approach, per category: ``for doc in category: for r in active_l: for s in
active_l+1: counts[(l, r, s)] += 1`` (the all-documents weight is the sum over categories, every document having one
category). Its per-document active-region lists are precomputed outside the timing, which favours the loop. Both
contenders then assemble the same networkx graph (every region a node with its counts, every co-activated pair an
edge with ``weight`` and ``weight_<cat>``); outputs are checked equal. Each contender runs ``--rounds`` times,
interleaved, and the minimum is kept.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


@dataclass
class SyntheticMaps:
    """Region maps with correlated, category-dependent activations (the members the graph consumes)."""

    layers: list
    grid: int
    n_docs: int
    labels: np.ndarray
    label_names: list
    acts: dict
    mode: str = "neurons"

    @property
    def n_regions(self) -> int:
        return self.grid * self.grid

    def activated(self, layer):
        return self.acts[layer]

    def region_neurons(self, layer, region):
        return np.arange(region * 5, region * 5 + 5)

    def region_activation(self, layer):
        return self.acts[layer].astype(np.float32)


def synthetic_maps(n_docs: int, n_layers: int, grid: int, n_cats: int, density: float, seed: int = 0):
    """Each document activates about ``density`` of the regions per layer; rates depend on the category and on a
    per-document topic carried across layers, so co-activations are not independent."""
    rng = np.random.default_rng(seed)
    r = grid * grid
    labels = rng.integers(0, n_cats, n_docs)
    topic = rng.integers(0, 4, n_docs)
    acts = {}
    for layer in range(n_layers):
        base = rng.gamma(2.0, density / 2.0, r)  # region base rates, mean = density
        cat_mod = rng.lognormal(0, 0.5, (n_cats, r))
        top_mod = rng.lognormal(0, 0.5, (4, r))
        rate = base[None] * cat_mod[labels] * top_mod[topic]
        rate *= density / rate.mean()
        acts[layer] = rng.random((n_docs, r)) < np.clip(rate, 0, 1)
    return SyntheticMaps(list(range(n_layers)), grid, n_docs, labels, [f"c{i}" for i in range(n_cats)], acts)


def loop_counts(maps, active):
    """Per category, per document, nested loops over the active regions of consecutive layers."""
    node, edge = {}, {}
    for k, cat in enumerate(maps.label_names):
        nc, ec = defaultdict(int), defaultdict(int)
        for d in np.flatnonzero(maps.labels == k):
            lists = active[d]
            for li, layer in enumerate(maps.layers):
                for r in lists[li]:
                    nc[(layer, r)] += 1
                if li + 1 < len(maps.layers):
                    nxt = maps.layers[li + 1]
                    for r in lists[li]:
                        for s in lists[li + 1]:
                            ec[(layer, r, nxt, s)] += 1
        node[cat], edge[cat] = nc, ec
    return node, edge


def loop_top_k(weights: dict, k: int) -> set:
    """Edges among the k heaviest out-edges of their source or in-edges of their target (ties: other end's id)."""
    out, inn = defaultdict(list), defaultdict(list)
    for key, w in weights.items():
        out[key[:2]].append((-w, key[3], key))
        inn[key[2:]].append((-w, key[1], key))
    keep = set()
    for groups in (out, inn):
        for lst in groups.values():
            lst.sort()
            keep.update(x[2] for x in lst[:k])
    return keep


def loop_graph(maps, active, top_k=None):
    import networkx as nx

    node, edge = loop_counts(maps, active)
    cats = maps.label_names
    g = nx.DiGraph()
    for layer in maps.layers:
        for r in range(maps.n_regions):
            row, col = divmod(r, maps.grid)
            attrs = {"layer": layer, "region": r, "row": row, "col": col,
                     "neurons": [int(x) for x in maps.region_neurons(layer, r)]}
            per = {f"docs_{c}": node[c].get((layer, r), 0) for c in cats}
            g.add_node((layer, r), **attrs, docs=sum(per.values()), **per)
    keys = sorted(set().union(*(edge[c].keys() for c in cats)))
    if top_k is not None:
        weights = {key: sum(edge[c].get(key, 0) for c in cats) for key in keys}
        keys = sorted(loop_top_k(weights, top_k))
    for key in keys:
        per = {f"weight_{c}": edge[c].get(key, 0) for c in cats}
        g.add_edge((key[0], key[1]), (key[2], key[3]), weight=sum(per.values()), **per)
    return g


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def main() -> None:
    import mri_lens.lenses.mri as mg

    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--grid", type=int, default=10)
    ap.add_argument("--cats", type=int, default=2)
    ap.add_argument("--density", type=float, default=0.125)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--stages", action="store_true")
    args = ap.parse_args()

    maps = synthetic_maps(args.docs, args.layers, args.grid, args.cats, args.density)
    dens = np.mean([a.mean() for a in maps.acts.values()])
    active = [[np.flatnonzero(maps.acts[layer][d]).tolist() for layer in maps.layers] for d in range(maps.n_docs)]
    print(f"{args.docs} docs x {args.layers} layers x {maps.n_regions} regions, {args.cats} categories, "
          f"mean activation density {dens:.3f}")

    contenders = {
        "vectorised_counts": lambda: mg.coactivation_counts(maps),
        "loop_counts": lambda: loop_counts(maps, active),
        "vectorised_graph": lambda: mg.coactivation_graph(maps),
        "loop_graph": lambda: loop_graph(maps, active),
        "vectorised_top5": lambda: mg.coactivation_graph(maps, top_edges=5),
        "loop_top5": lambda: loop_graph(maps, active, top_k=5),
    }
    best = {k: float("inf") for k in contenders}
    outs = {}
    for _ in range(args.rounds):
        for k, f in contenders.items():
            t, outs[k] = timed(f)
            best[k] = min(best[k], t)

    g, h = outs["vectorised_graph"], outs["loop_graph"]
    assert list(g.nodes(data=True)) == list(h.nodes(data=True))
    assert sorted(g.edges(data=True)) == sorted(h.edges(data=True))
    g5, h5 = outs["vectorised_top5"], outs["loop_top5"]
    assert sorted(g5.edges(data=True)) == sorted(h5.edges(data=True))
    print(f"edges: {g.number_of_edges()} untrimmed, {g5.number_of_edges()} with top_edges=5 (outputs equal)")
    for k, v in best.items():
        print(f"{k:>18s}: {v:8.3f} s")
    for name in ("counts", "graph", "top5"):
        print(f"{name} speed-up (loop / vectorised): {best['loop_' + name] / best['vectorised_' + name]:.1f}x")

    if args.stages:
        import plotly.io as pio

        g5 = mg.coactivation_graph(maps, min_weight=1)
        stages = {
            "graph(min_weight=50)": lambda: mg.coactivation_graph(maps, min_weight=50),
            "graph(top_edges=5)": lambda: mg.coactivation_graph(maps, top_edges=5),
            "enrich (all edges)": lambda: mg.enrich(g5),
            "figure (all edges)": lambda: pio.to_json(mg.graph_figure(g5)),
            "metrics (all edges)": lambda: mg.graph_metrics(g5),
            "compare_categories": lambda: mg.compare_categories(maps, g5, "c0", "c1"),
        }
        for k, f in stages.items():
            t, out = timed(f)
            extra = f" ({out.number_of_edges()} edges)" if hasattr(out, "number_of_edges") else ""
            print(f"{k:>22s}: {t:8.3f} s{extra}")


if __name__ == "__main__":
    main()
