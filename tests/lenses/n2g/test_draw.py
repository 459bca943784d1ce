"""Drawing a fitted graph (mri_lens.lenses.n2g.draw): plotly figure and networkx graphs (SVG escaping: test_render)."""

from __future__ import annotations

from .builders import _synthetic_graph


def test_figure_and_networkx_of_the_condensed_graph():
    g = _synthetic_graph({5: "<script>alert(1)</script>", 6: "&amp;'\""})
    fig = g.figure()
    assert type(fig).__name__ == "Figure"
    G = g.to_networkx()
    assert set(G.nodes) == {(0, 5), (0, 6), (1, 6)} and G.has_edge((0, 5), (1, 6))
    full = g.to_networkx(condensed=False)
    assert any(d.get("kind") == "end" for _, d in full.nodes(data=True))
