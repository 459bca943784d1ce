"""N2G as HTML: a graph's scores table, its section of a Neuroscope neuron page, its notebook card and the demo page.

Built on the shared renderer (:mod:`mri_lens.render.html`): the page shell, the escaper and the stylesheet. The graph
itself is drawn by :mod:`.draw` (``g.to_svg()``); nothing here imports the rest of the lens.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ...render.html import escape, write_page
from ...render.links import neuron_href, neuron_id

__all__ = ["scores_html", "site_section", "html_card", "write_demo_page"]


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def scores_html(g: Any) -> str:
    """A small table of the graph's scores (N2G and baselines), or a note when it was not evaluated."""
    s = g.scores
    if not s:
        return "<p class='muted'>not evaluated</p>"
    c = (g.meta or {}).get("evaluation") or s  # the counts behind the scores (older graphs kept them in scores)
    head = ("<table><thead><tr><th>method</th><th>firing P</th><th>firing R</th><th>firing F1</th>"
            "<th>non-firing F1</th><th>correlation</th><th>detection bal. acc.</th><th>detection AUC</th></tr>"
            "</thead><tbody>")
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{_fmt(s[m].get('firing_precision'))}</td>"
        f"<td>{_fmt(s[m].get('firing_recall'))}</td><td>{_fmt(s[m].get('firing_f1'))}</td>"
        f"<td>{_fmt(s[m].get('nonfiring_f1'))}</td><td>{_fmt(s[m].get('correlation'))}</td>"
        f"<td>{_fmt(s[m].get('detection_balanced_accuracy'))}</td><td>{_fmt(s[m].get('detection_auc'))}</td></tr>"
        for m, name in (("n2g", "N2G"), ("token", "token lookup"), ("ngram", f"{g.config.ngram}-gram lookup"))
        if m in s)
    note = (" <b>No firing token in the held-out examples</b>: firing recall and F1 are undefined."
            if c.get("no_firing_test_token") else "")
    if s.get("n2g", {}).get("loses_to_token_lookup"):
        note += " <b>Token lookup beats this explanation</b> on firing F1."
    return (head + rows + "</tbody></table><p class='muted'>Held out: "
            f"{c['n_test_texts']} top examples ({c['n_test_tokens']} tokens, {c['n_firing_test_tokens']} firing) and "
            f"{c['n_random_texts']} random documents; firing = at least {c['firing_threshold']:g} of the neuron's "
            f"max.{note}</p>")


def site_section(g: Any) -> str:
    """HTML for a Neuroscope neuron page: the condensed graph as inline SVG and its scores."""
    return ("<h2>N2G graph</h2><p class='muted'>Token patterns that make the neuron fire (Neuron to Graph): red "
            "nodes fire (darker = stronger), blue nodes are important context before them (darker = more "
            "important), bold outline = a pattern may end here; read right to left from each red node.</p>"
            + g.to_svg() + scores_html(g))


def html_card(g: Any) -> str:
    """Self-contained notebook view: summary line, SVG, scores (no script, no CDN)."""
    act = ", ".join(escape(repr(a)) for a in g.activating_tokens()[:12])
    return (f"<div><b>N2G layer {g.layer}, neuron {g.neuron}</b>: {len(g.trie.paths())} patterns; fires on "
            f"{act}{' ...' if len(g.activating_tokens()) > 12 else ''}<br>{g.to_svg()}{scores_html(g)}</div>")


def write_demo_page(path: str | os.PathLike, graphs: Mapping[int, Any], layer: int, model_id: Any, *,
                    site_prefix: str = "site") -> str:
    """The ``mri-lens demo`` page of a few neurons' graphs: the layer's mean scores, then one card per neuron
    (SVG, scores, a link to its page in the Neuroscope site ``../{site_prefix}``, which must hold it). ``graphs``: a
    :class:`~mri_lens.lenses.n2g.LayerGraphs`. ``path`` lies inside an N2G output directory the caller has claimed.
    Returns the page's absolute path."""
    cards = []
    for n, g in sorted(graphs.items()):
        href = neuron_href(f"../{site_prefix}", layer, n)
        cards.append(f"<h2 id='{neuron_id(layer, n)}'><a href='{escape(href)}'>{neuron_id(layer, n)}</a> (layer "
                     f"{layer}, neuron {n}; its Neuroscope page)</h2>" + g.to_svg() + scores_html(g))
    table = graphs.table()
    summary = ""
    if len(table):
        r = table.iloc[0]
        summary = (f"<p>Mean firing F1 over {int(r['neurons'])} neurons: N2G {_fmt(r['n2g_firing_f1'])}, token "
                   f"lookup {_fmt(r['token_firing_f1'])}, n-gram lookup {_fmt(r['ngram_firing_f1'])}; "
                   f"correlation N2G {_fmt(r['n2g_correlation'])}.</p>")
    body = f"<h1>N2G graphs: layer {layer} of {escape(model_id)}</h1>{summary}{''.join(cards)}"
    return write_page(path, "N2G graphs", body, owned=True)
