"""Drawing a fitted graph (mri_lens.lenses.n2g.draw): plotly figure and networkx graphs (SVG escaping: test_render)."""

from __future__ import annotations

from .builders import _synthetic_graph

# _synthetic_graph's trie: the pattern "5 after 6" firing on token 5 at 0.9, and token 6 alone firing at 0.7.
LABELS = {5: "<script>alert(1)</script>", 6: "&amp;'\""}


def test_networkx_of_the_condensed_and_the_full_graph():
    g = _synthetic_graph(LABELS)
    G = g.to_networkx()
    assert G.graph == {"layer": 0, "neuron": 3}
    assert set(G.nodes) == {(0, 5), (0, 6), (1, 6)} and set(G.edges) == {((0, 5), (1, 6))}
    assert {k: (d["label"], d["kind"], d["end"]) for k, d in G.nodes(data=True)} == {
        (0, 5): (LABELS[5], "activator", False), (0, 6): (LABELS[6], "activator", True),
        (1, 6): (LABELS[6], "context", True)}
    assert (G.nodes[(0, 5)]["weight"], G.nodes[(0, 6)]["weight"]) == (0.9, 0.7)
    full = g.to_networkx(condensed=False)
    ends = [n for n, d in full.nodes(data=True) if d.get("kind") == "end"]
    assert len(ends) == 2 and all(full.in_degree(n) == 1 for n in ends)  # one END per pattern, under its last token
    assert sorted(d["label"] for _, d in full.nodes(data=True) if d.get("kind") != "end") == sorted(
        [LABELS[5], LABELS[6], LABELS[6]])


def test_figure_draws_the_condensed_graph():
    """One marker per node of the condensed graph, at x = -depth (context left of what it precedes), labelled with
    its token, outlined thick where a pattern ends; one line per edge between its two markers."""
    g = _synthetic_graph(LABELS)
    G = g.to_networkx()
    fig = g.figure()
    lines, *markers = fig.data
    assert lines.mode == "lines" and [t.name for t in markers] == ["firing token", "important context"]
    drawn = {}
    for t in markers:
        for x, y, text, width in zip(t.x, t.y, t.text, t.marker.line.width):
            drawn[(x, y)] = (t.name, text, width)
    pos = {}
    for k, d in G.nodes(data=True):
        hits = [xy for xy, (name, text, _) in drawn.items()
                if xy[0] == -k[0] and text == d["label"].replace(" ", "\u00b7")
                and name == ("firing token" if d["kind"] == "activator" else "important context")]
        assert len(hits) == 1, (k, drawn)
        pos[k] = hits[0]
        assert drawn[pos[k]][2] == (3 if d["end"] else 0.5)
    assert len(drawn) == G.number_of_nodes()
    segments = {(tuple(lines.x[i:i + 2]), tuple(lines.y[i:i + 2])) for i in range(0, len(lines.x), 3)}
    assert segments == {((pos[u][0], pos[v][0]), (pos[u][1], pos[v][1])) for u, v in G.edges}
    assert fig.layout.title.text == "N2G: layer 0, neuron 3"
