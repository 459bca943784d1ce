"""The pages of an N2G output directory (what ``mri-lens explain`` writes beside its JSON).

``index.html``: one table of every explained neuron (its patterns, the tokens it fires on, its scores beside the
token-lookup baseline), each row linking to its card; ``L{layer}/index.html``: one card per neuron, its graph as
inline SVG and its scores table. Offline (no script, nothing fetched), every token escaped. Built on the graph's
own views (``g.to_svg()``, :func:`.render.scores_html`) and the shared page shell.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

from ...render.html import CSS, escape, escape_token, write_page
from ...render.links import SiteLinks, neuron_id, neuron_link_html, site_links
from .render import scores_html

__all__ = ["saved_layers", "write_pages"]

_LAYER_DIR = re.compile(r"L(\d+)\Z")
_SHOWN_TOKENS = 8  # firing tokens listed per neuron in the index
_CSS = CSS + "code.tok{background:#f3f3f3;border:1px solid #ddd;padding:0 2px;margin:0 2px 0 0}\n"  # token boxes


def saved_layers(out_dir: str | os.PathLike) -> list[int]:
    """The layers with graphs saved under ``out_dir`` (its ``L{layer}/`` directories), sorted."""
    out = []
    for name in os.listdir(os.fspath(out_dir)):
        m = _LAYER_DIR.match(name)
        if m and name == f"L{int(m[1])}" and os.path.isdir(os.path.join(os.fspath(out_dir), name)):
            out.append(int(m[1]))
    return sorted(out)


def _f(v: Any) -> str:
    return "" if v is None else f"{v:.2f}"


def _score(g: Any, method: str, key: str) -> Any:
    return ((g.scores or {}).get(method) or {}).get(key)


def _tokens_html(g: Any) -> str:
    """The tokens the neuron fires on, each escaped in its own box (spaces and newlines visible)."""
    toks = g.activating_tokens()
    shown = "".join(f"<code class='tok'>{escape_token(t)}</code>" for t in toks[:_SHOWN_TOKENS])
    return shown + (f" <span class='muted'>+{len(toks) - _SHOWN_TOKENS}</span>" if len(toks) > _SHOWN_TOKENS else "")


def _index_row(g: Any, href: str) -> str:
    return (f"<tr><td><a href='{escape(href)}'>{escape(neuron_id(g.layer, g.neuron))}</a></td>"
            f"<td data-v='{len(g.trie.paths())}'>{len(g.trie.paths())}</td><td>{_tokens_html(g)}</td>"
            f"<td>{_f(_score(g, 'n2g', 'firing_f1'))}</td><td>{_f(_score(g, 'token', 'firing_f1'))}</td>"
            f"<td>{_f(_score(g, 'n2g', 'correlation'))}</td></tr>")


_INDEX_HEAD = ("<table><thead><tr><th>neuron</th><th>patterns</th><th>fires on</th><th>N2G firing F1</th>"
               "<th>token lookup firing F1</th><th>N2G correlation</th></tr></thead><tbody>")


def _skipped_html(graphs: Any) -> str:
    skipped = getattr(graphs, "skipped", None) or {}
    return f"<p class='muted'>{len(skipped)} neurons skipped (dead in the scan).</p>" if skipped else ""


def _card(g: Any, site: SiteLinks | None) -> str:
    """One neuron: its id (a link to its Neuroscope page when ``site`` has one), graph and scores."""
    return (f"<h2 id='N{g.neuron}'>{neuron_link_html(site, g.layer, g.neuron)} <span class='muted'>(layer "
            f"{g.layer}, neuron {g.neuron})</span></h2><div class='wide'>{g.to_svg()}</div>{scores_html(g)}")


def _layer_page(path: str, layer: int, graphs: Mapping[int, Any], model_id: str, site: Any) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    links = site_links(site, path)
    cards = "".join(_card(graphs[n], links) for n in sorted(graphs))
    body = (f"<nav><a href='../index.html'>all explained neurons</a></nav><h1>N2G graphs: layer {layer}"
            f"{' of ' + escape(model_id) if model_id else ''}</h1><p class='muted'>Token patterns that make each "
            "neuron fire (Neuron to Graph): red nodes fire (darker = stronger), blue nodes are important context "
            "before them (darker = more important), a bold outline marks where a pattern may end.</p>"
            f"{_skipped_html(graphs)}{cards or '<p>No graphs in this layer.</p>'}")
    return write_page(path, f"N2G graphs: layer {layer}", body, css=_CSS, owned=True)


def write_pages(out_dir: str | os.PathLike, layers: Mapping[int, Mapping[int, Any]], *, model_id: str = "",
                site: Any = None) -> str:
    """Write ``L{layer}/index.html`` for each of ``layers`` (``{layer: {neuron: NeuronGraph}}``, e.g.
    :class:`~mri_lens.lenses.n2g.LayerGraphs` from :func:`~mri_lens.lenses.n2g.explain_layer`) and
    ``index.html``, the table of every neuron in ``layers``. ``out_dir`` is the N2G output directory the graphs were
    saved in (already claimed: the pages are written inside it). ``site``: a Neuroscope site of the same model (its
    directory or :class:`~mri_lens.render.links.SiteLinks`): neuron ids link to their pages there. Returns the
    absolute path of ``index.html``."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    sections = []
    for layer in sorted(layers):
        graphs = layers[layer]
        _layer_page(os.path.join(out_dir, f"L{layer}", "index.html"), layer, graphs, model_id, site)
        rows = "".join(_index_row(graphs[n], f"L{layer}/index.html#N{n}") for n in sorted(graphs))
        sections.append(f"<h2 id='L{layer}'>Layer {layer}: {len(graphs)} neurons</h2>{_skipped_html(graphs)}"
                        f"{_INDEX_HEAD}{rows}</tbody></table>")
    body = (f"<h1>N2G graphs{' of ' + escape(model_id) if model_id else ''}</h1><p class='muted'>Each neuron's "
            "token patterns (its graph) and how well they predict its activation on held-out examples: firing F1 "
            "of the graph beside a lookup of the tokens it fires on. A neuron's id opens its graph.</p>"
            + ("".join(sections) or "<p>No graphs were saved here.</p>"))
    return write_page(os.path.join(out_dir, "index.html"), "N2G graphs", body, css=_CSS, owned=True)
