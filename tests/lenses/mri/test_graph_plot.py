"""The layered graph figure: positions, hover counts, category colours and widths, few traces for many edges."""

from __future__ import annotations

import pytest

from mri_lens.errors import GraphError
from mri_lens.lenses import mri as mg

from .builders import hand_maps, random_maps


@pytest.mark.parametrize("n_cats", [0, 1, 2, 5])
def test_figure(n_cats):
    maps = random_maps(1, n_cats=n_cats, density=0.4)
    g = mg.coactivation_graph(maps)
    fig = mg.graph_figure(g, width_bins=4)
    h = max(n_cats, 0)
    n_classes = h + 2 if h else 1
    assert len(fig.data) <= n_classes * 4 + 2
    nodes = [t for t in fig.data if t.name == "regions"][0]
    col = {l: i for i, l in enumerate(maps.layers)}
    assert list(nodes.x) == [col[u[0]] for u in g.nodes]
    assert list(nodes.y) == [-u[1] for u in g.nodes]
    edges = [t for t in fig.data if t.name == "edges"][0]
    (u, v, d), = [e for e in g.edges(data=True)][:1]
    assert f"documents: {d['weight']}" in edges.hovertext[0]
    for c in g.graph["categories"]:
        assert f"{c}: {d[f'weight_{c}']} (" in edges.hovertext[0]
    assert list(fig.layout.xaxis.ticktext) == [f"layer {l}" for l in maps.layers]


def test_figure_highlight_and_colours():
    g = mg.coactivation_graph(hand_maps(), enrichment=True)
    fig = mg.graph_figure(g, highlight=["pos"])
    names = {t.name for t in fig.data if t.mode == "lines"}
    assert names <= {"pos", "shared", "no highlighted category"}
    # Edge 0->0 carries two "pos" documents only: drawn in pos's colour.
    fig = mg.graph_figure(g, highlight=["pos", "neg"])
    lines = [t for t in fig.data if t.mode == "lines"]
    pos_xy = {(t.x[i], t.y[i], t.x[i + 1], t.y[i + 1]) for t in lines if t.name == "pos"
              for i in range(0, len(t.x), 3)}
    assert (0, 0, 1, 0) in pos_xy
    shared = {(t.x[i], t.y[i], t.x[i + 1], t.y[i + 1]) for t in lines if t.name == "shared"
              for i in range(0, len(t.x), 3)}
    assert (0, 0, 1, -1) in shared  # 0->1 has one pos and one neg document
    widths = [t.line.width for t in lines]
    assert max(widths) == pytest.approx(8.0)
    with pytest.raises(GraphError, match="unknown category 'nope'"):
        mg.graph_figure(g, highlight=["nope"])


def test_figure_many_edges_few_traces():
    maps = random_maps(0, n_docs=300, layers=tuple(range(6)), grid=6, n_cats=5, density=0.3)
    g = mg.coactivation_graph(maps)
    assert g.number_of_edges() > 5000
    fig = mg.graph_figure(g)
    assert len(fig.data) <= 7 * 4 + 2
