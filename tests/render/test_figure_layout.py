"""Pages on a narrow screen, without a browser: figures take their width from the page, wide tables scroll in
their own box (the real-browser check at 420 px is in test_browser.py)."""

from __future__ import annotations

import json
import re

from mri_lens.render.html import CSS, figure_html


def _spec(fragment: str) -> tuple[dict, str]:
    """The layout plotly is given in a figure fragment, and the fragment's outer div."""
    m = re.search(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{", fragment, re.S)
    return json.loads(m.group(2)), fragment[:fragment.index(">") + 1]


def test_a_fixed_width_figure_fills_its_container_up_to_that_width():
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=[1, 2], y=[3, 4]), layout={"width": 1020, "height": 360, "title": "a long title"})
    html = figure_html(fig)
    layout, outer = _spec(html)
    assert "width" not in layout and layout["height"] == 360  # the page gives the width, the figure its height
    assert outer == "<div class='figure' style='max-width:1020px'>"  # its width only caps it
    assert "width:100%" in html.replace(" ", "") and '"responsive": true' in html
    assert "Plots.resize" in html and "title.text" in html  # redrawn at the final width, long titles wrapped
    assert fig.layout.width == 1020  # the caller's figure is unchanged
    assert _spec(figure_html(go.Figure(go.Bar(x=[1], y=[1]))))[1] == "<div class='figure'>"


def test_wide_tables_scroll_inside_their_box_and_images_shrink():
    rules = CSS.replace("\n", "")
    assert "table{display:block;max-width:100%;overflow-x:auto}" in rules
    assert "img{max-width:100%;height:auto}" in rules and ".figure{margin:8px 0 20px;max-width:100%}" in rules
