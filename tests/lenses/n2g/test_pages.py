"""The pages of an N2G output directory (mri_lens.lenses.n2g.pages): the index and each layer's cards."""

from __future__ import annotations

import re

from mri_lens.lenses.n2g.pages import saved_layers, write_pages

from .builders import _synthetic_graph

LABELS = {5: "<script>alert(1)</script>", 6: "&amp;'\""}


def test_pages_list_every_graph_and_escape_its_tokens(tmp_path):
    g = _synthetic_graph(LABELS)
    (tmp_path / "L0").mkdir()
    (tmp_path / "L0" / "N3.json").write_text("{}")
    (tmp_path / "L01").mkdir()  # not a name explain writes
    assert saved_layers(tmp_path) == [0]
    index = write_pages(tmp_path, {0: {3: g}}, model_id="<b>m</b>")
    assert index == str(tmp_path / "index.html")
    page = open(index, encoding="utf-8").read()
    layer = (tmp_path / "L0" / "index.html").read_text(encoding="utf-8")
    assert "href='L0/index.html#N3'>L0/N3</a>" in page and "<h2 id='N3'>" in layer
    for text in (page, layer):
        assert "<script" not in text and "<b>m</b>" not in text and "&lt;b&gt;m&lt;/b&gt;" in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the firing token, escaped
    assert layer.count("<svg") == 1 and "L0 N3: context \u2192 firing token" in layer
    assert re.search(r"<td>&amp;amp;&#x27;&quot;</td>|&amp;amp;&#x27;&quot;", page)
    assert "href='../index.html'" in layer
