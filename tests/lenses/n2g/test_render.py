"""N2G HTML (mri_lens.lenses.n2g.render): the notebook card and the Neuroscope section escape every token."""

from __future__ import annotations

import mri_lens as ml

from .builders import _synthetic_graph


def test_every_token_is_escaped():
    g = _synthetic_graph({5: "<script>alert(1)</script>", 6: "&amp;'\""})
    for out in (g.to_svg(), g._repr_html_(), ml.n2g.site_section(g)):
        assert "<script" not in out and "&lt;script&gt;" in out
        assert "&amp;amp;" in out


def test_demo_page_uses_the_shared_page_shell(tmp_path):
    from mri_lens.storage.write import page_marker
    from mri_lens.lenses.n2g.explain import LayerGraphs
    from mri_lens.lenses.n2g.render import scores_html, write_demo_page
    from mri_lens.render.html import CSS

    g = _synthetic_graph({5: "<b>five</b>", 6: "six"})
    assert scores_html(g) == "<p class='muted'>not evaluated</p>"
    path = write_demo_page(tmp_path / "n2g" / "index.html", LayerGraphs(0, {3: g}), 0, "<tiny>")
    page = open(path, encoding="utf-8").read()
    assert page_marker() in page and CSS in page and "<title>N2G graphs</title>" in page
    assert "of &lt;tiny&gt;</h1>" in page and "&lt;b&gt;five" in page and "<b>five" not in page
    assert "href='../site/index.html#L0/N3'" in page and "not evaluated" in page
