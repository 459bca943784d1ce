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


def _svg_width(svg: str) -> int:
    import re

    return int(re.match(r"<svg [^>]*?width='(\d+)'", svg).group(1))


def test_a_one_column_svg_is_as_wide_as_its_title():
    """A graph of one firing token (one column of nodes) still shows its whole title, "L0 N3: context -> firing
    token": the SVG is at least the title's estimated width (monospace, 0.6 em a character) plus its margin."""
    from mri_lens.lenses.n2g import N2GConfig, NeuronGraph
    from mri_lens.lenses.n2g.draw import text_width

    from .builders import _trie

    g = NeuronGraph(layer=11, neuron=3071, trie=_trie(([5], 0.9)), max_activation=2.0, config=N2GConfig(),
                    token_strs={5: "x"}, examples={"train": [], "test": []})
    svg = g.to_svg()
    title = "L11 N3071: context \u2192 firing token"
    assert f">{title}</text>" in svg  # the title text whole
    assert _svg_width(svg) >= 5 + text_width(title)  # drawn from x=5
    assert text_width(title) >= len(title) * 12 * 0.6
    empty = NeuronGraph(layer=11, neuron=3071, trie=_trie(), max_activation=2.0, config=N2GConfig(),
                        token_strs={}, examples={"train": [], "test": []}).to_svg()
    note = "L11 N3071: empty graph (no firing token in the training examples)"
    assert f">{note}</text>" in empty and _svg_width(empty) >= 4 + text_width(note)
