"""The layered graph figure: positions, hover counts, category colours and widths, few traces for many edges."""

from __future__ import annotations

import pytest

from mri_lens.errors import GraphError
from mri_lens.lenses import mri as mg
from mri_lens.lenses.mri.graph_plot import _NONE, _colour

from .builders import hand_maps, random_maps


@pytest.mark.parametrize("n_cats", [0, 1, 2, 5])
def test_figure(n_cats):
    maps = random_maps(1, n_cats=n_cats, density=0.4)
    g = mg.coactivation_graph(maps)
    fig = mg.graph_figure(g, width_bins=4)
    h = max(n_cats, 0)
    n_classes = h + 1 if h else 1
    assert len(fig.data) <= n_classes * 4 + 2 + n_classes + 1  # edge traces, nodes, hovers, legend-only entries
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


def _segments(fig, name: str) -> set[tuple]:
    """The edges drawn by the line traces called ``name``: ``(x0, y0, x1, y1)`` each."""
    lines = [t for t in fig.data if t.mode == "lines" and t.name == name]
    return {(t.x[i], t.y[i], t.x[i + 1], t.y[i + 1]) for t in lines for i in range(0, len(t.x), 3)}


def _xy(g, u, v) -> tuple:
    col = {l: i for i, l in enumerate(g.graph["layers"])}
    return (col[u[0]], -u[1], col[v[0]], -v[1])


def test_figure_colours_only_what_enrichment_says():
    g = mg.coactivation_graph(hand_maps(), enrichment=True)
    assert not any(d["enriched_for"] for *_, d in g.edges(data=True))  # a handful of documents: nothing enriched
    fig = mg.graph_figure(g, highlight=["pos", "neg"])
    names = {t.name for t in fig.data if t.mode == "lines"}
    # edge 0->0 carries "pos" documents only, yet is not enriched: grey, never pos's colour
    assert names == {"not enriched"} and _segments(fig, "not enriched") == {_xy(g, u, v) for u, v in g.edges}
    assert "Fisher" in fig.layout.legend.title.text and "q < 0.05" in fig.layout.legend.title.text
    widths = [t.line.width for t in fig.data if t.mode == "lines"]
    assert max(widths) == pytest.approx(8.0)
    with pytest.raises(GraphError, match="unknown category 'nope'"):
        mg.graph_figure(g, highlight=["nope"])


def test_figure_colours_the_enriched_edges_and_names_every_colour():
    maps = random_maps(3, n_docs=80, layers=(0, 1, 2), grid=3, n_cats=2, density=0.25)
    for layer in maps.layers:  # planted: region 0 of every layer fires on exactly the documents of cat0
        maps.acts[layer][:, 0] = maps.labels == 0
    g = mg.coactivation_graph(maps, enrichment=True)
    fig = mg.graph_figure(g)
    for c in ("cat0", "cat1"):
        want = {_xy(g, u, v) for u, v, d in g.edges(data=True) if d["enriched_for"] == c}
        assert _segments(fig, f"enriched for {c}") == want
    assert _xy(g, (0, 0), (1, 0)) in _segments(fig, "enriched for cat0")  # the planted contrast shows
    rest = {_xy(g, u, v) for u, v, d in g.edges(data=True) if d["enriched_for"] is None}
    assert _segments(fig, "not enriched") == rest
    # nodes take the same colours, and every colour drawn is named once in the legend
    nodes = [t for t in fig.data if t.name == "regions"][0]
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert len(legend) == len(set(legend))
    assert g.nodes[(0, 0)]["enriched_for"] == "cat0"
    for (u, d), colour in zip(g.nodes(data=True), nodes.marker.color):
        if d["docs"]:
            c = d["enriched_for"]
            assert colour == (_colour(["cat0", "cat1"].index(c)) if c else _NONE), u
            assert (f"enriched for {c}" if c else "not enriched") in legend


def test_figure_many_edges_few_traces():
    maps = random_maps(0, n_docs=300, layers=tuple(range(6)), grid=6, n_cats=5, density=0.3)
    g = mg.coactivation_graph(maps)
    assert g.number_of_edges() > 5000
    fig = mg.graph_figure(g)
    assert len(fig.data) <= 6 * 4 + 2 + 6 + 1
