"""LLM-MRI's even/odd-layer projection metrics: mri_lens's sparse-matrix computation against networkx's own functions,
side by side in one process, on a random layered graph shaped like a co-activation graph.

    python bench/bench_layer_metrics.py                          # 8 layers x 100 regions, 12 out-edges per node
    python bench/bench_layer_metrics.py --layers 12 --nodes 100 --out-degree 40

networkx: ``bipartite.collaboration_weighted_projected_graph`` of ``g.to_undirected()`` onto the even (odd) layer
positions, then ``degree``, ``average_clustering(weight=)``, ``degree_assortativity_coefficient(weight=)``,
``density`` and ``average_shortest_path_length(weight=)``, what LLM-MRI's ``Metrics`` calls. mri_lens:
``layer_metrics.projections(g)``. Prints both times, the ratio and the largest difference between their values.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def layered_graph(layers: int, nodes: int, out_degree: int, seed: int):
    """A DiGraph of ``layers`` x ``nodes`` nodes ``(layer, i)``, each joined to ``out_degree`` random nodes of the
    next layer with integer weights 1..50."""
    import networkx as nx

    rng = np.random.default_rng(seed)
    g = nx.DiGraph(layers=list(range(layers)))
    for l in range(layers):
        g.add_nodes_from(((l, i), {"layer": l}) for i in range(nodes))
    for l in range(layers - 1):
        for i in range(nodes):
            for j in rng.choice(nodes, size=out_degree, replace=False):
                g.add_edge((l, i), (l + 1, int(j)), weight=int(rng.integers(1, 51)))
    return g


def networkx_projections(g) -> dict[str, dict[str, float]]:
    import networkx as nx
    from networkx.algorithms import bipartite

    und = g.to_undirected()
    und.remove_nodes_from([u for u in list(und) if und.degree(u) == 0])
    out = {}
    for side, parity in (("even", 0), ("odd", 1)):
        p = bipartite.collaboration_weighted_projected_graph(und, [u for u in und if g.nodes[u]["layer"] % 2 == parity])
        deg = np.array([d for _, d in p.degree()], dtype=np.float64)
        strength = np.array([d for _, d in p.degree(weight="weight")], dtype=np.float64)
        out[side] = {"degree_mean": deg.mean(), "strength_mean": strength.mean(),
                     "average_clustering": nx.average_clustering(p, weight="weight"),
                     "assortativity": nx.degree_assortativity_coefficient(p, weight="weight"),
                     "density": nx.density(p),
                     "average_shortest_path": nx.average_shortest_path_length(p, weight="weight")
                     if nx.is_connected(p) else float("nan")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--out-degree", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from mri_lens.lenses.mri import layer_metrics

    g = layered_graph(args.layers, args.nodes, args.out_degree, args.seed)
    print(f"graph: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges")
    t0 = time.perf_counter()
    ours = layer_metrics.projections(g)
    t1 = time.perf_counter()
    ref = networkx_projections(g)
    t2 = time.perf_counter()
    diff = max(abs(float(ours.loc[side, k]) - float(v)) for side, row in ref.items() for k, v in row.items())
    print(f"projection edges: even {int(ours.loc['even', 'edges'])}, odd {int(ours.loc['odd', 'edges'])}")
    print(f"mri_lens {t1 - t0:.2f} s, networkx {t2 - t1:.2f} s, ratio {(t2 - t1) / (t1 - t0):.1f}x, "
          f"largest difference {diff:.2e}")


if __name__ == "__main__":
    main()
