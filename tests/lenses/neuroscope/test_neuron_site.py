"""Neuroscope lens, neuron pages and the static site: escaping, links, examples, logit effects, the CLI."""

from __future__ import annotations

import os
import re
import statistics

import pytest

import mri_lens as ml
from mri_lens.cli import main

from corpora import NEUROSCOPE_PROMPTS as PROMPTS
from corpora import PROSE

NASTY = ["<script>alert(1)</script> &amp; \"quoted\" 'single'\nnew line <b>bold</b>",
         "x = '<script>alert(1)</script>'  # &amp; \"\"\n\tif a < b and c > d:\n        pass"]
HTTP_REF = re.compile(r"""(?:src|href)\s*=\s*["']?https?:|url\(\s*["']?https?:|@import\s+["']?https?:""", re.I)


def test_escaping_everywhere(tiny, tmp_path):
    view = ml.neuroscope.view(tiny, NASTY, hi=-100.0, max_neurons_per_layer=2, layers=[0])
    path = view.save_html(tmp_path / "view.html")
    cv = view.circuitsvis(0)
    props = cv.src.split("CircuitsVis.TextNeuronActivations,")[1]  # the offline bundle comes before the props
    assert "&lt;" in props and '" &amp;"' in props and '"<' not in props and '" <' not in props
    assert "unpkg.com" not in cv.src  # never the CDN version
    scan = ml.scan(tiny, NASTY * 3, batch_size=6, pooling=("mean", "max"), progress=False, layers=[0])
    ml.neuroscope.site(scan, tiny, tmp_path / "site", neurons=range(4), k=3)
    files = [path] + [os.path.join(r, f) for r, _, fs in os.walk(tmp_path / "site") for f in fs]
    assert len(files) == 1 + 2 + 1 + 1 + 4 + 1  # view, assets, index, layer page, neuron pages, manifest.json
    for f in files:
        text = open(f, encoding="utf-8").read()
        assert "<script>alert" not in text and "<b>bold" not in text, f
        assert not HTTP_REF.search(text), f
        assert not re.search(r"<script[^>]*src=['\"](?!\.\./assets/site\.js|assets/site\.js)", text), f
    page = open(tmp_path / "site" / "L0" / "N0.html", encoding="utf-8").read()
    assert "&lt;" in page and "&amp;amp;" in page


@pytest.fixture(scope="module")
def layer_site(tiny, tiny_scan, tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    index = ml.neuroscope.site(tiny_scan, tiny, out, layers=[0], k=20)
    return out, index


def test_whole_layer_site_links_resolve(layer_site, tiny_scan):
    out, index = layer_site
    seen, todo = set(), [os.path.abspath(index)]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        text = open(page, encoding="utf-8").read()
        for ref in re.findall(r"""(?:href|src)=['"]([^'"#]+)""", text):
            assert not ref.startswith(("http:", "https:", "/", "file:")), ref
            target = os.path.normpath(os.path.join(os.path.dirname(page), ref))
            assert os.path.exists(target), f"{page} -> {ref}"
            if target.endswith(".html"):
                todo.append(target)
    neuron_pages = [p for p in seen if re.search(r"N\d+\.html$", p)]
    assert len(neuron_pages) == tiny_scan.d_mlp == 512
    sizes = [os.path.getsize(p) for p in neuron_pages]
    assert statistics.median(sizes) < 200_000
    assert sorted(os.listdir(os.path.join(out, "assets"))) == ["site.css", "site.js"]
    page = open(os.path.join(out, "L0", "N7.html"), encoding="utf-8").read()
    assert page.count("<tr><td>") >= 20 and "Direct logit effects" in page and "<details>" in page
    assert "activation bands" in page and "Random examples" in page and "<svg" in page


def test_site_examples_match_scan(layer_site, tiny_scan):
    out, _ = layer_site
    page = open(os.path.join(out, "L0", "N11.html"), encoding="utf-8").read()
    top = float(tiny_scan.top.values[0, 11, 0])
    assert f"<td>{top:.3f}</td>" in page  # recomputed per-token max equals the scan's top value


def test_determinism(tiny, tiny_scan, tmp_path):
    a = ml.neuroscope.site(tiny_scan, tiny, tmp_path / "a", layers=[1], neurons=range(6), k=5)
    b = ml.neuroscope.site(tiny_scan, tiny, tmp_path / "b", layers=[1], neurons=range(6), k=5)
    for root, _, files in os.walk(tmp_path / "a"):
        for f in files:
            pa = os.path.join(root, f)
            pb = pa.replace(str(tmp_path / "a"), str(tmp_path / "b"))
            assert open(pa, "rb").read() == open(pb, "rb").read(), f
    v1 = ml.neuroscope.view(tiny, PROMPTS, hi=1.0).to_html()
    v2 = ml.neuroscope.view(tiny, PROMPTS, hi=1.0).to_html()
    assert v1 == v2 and a != b


def test_site_errors(tiny, tiny_scan, tmp_path):
    with pytest.raises(ml.ScanError, match="layer 9 was not scanned"):
        ml.neuroscope.site(tiny_scan, tiny, tmp_path / "x", layers=[9])
    with pytest.raises(ml.ScanError, match="neurons must be in"):
        ml.neuroscope.site(tiny_scan, tiny, tmp_path / "x", neurons=[600])


def test_cli_neuroscope_and_site(tiny_scan, tmp_path, capsys):
    out = tmp_path / "view.html"
    assert main(["neuroscope", "--model", "tiny", "--prompt", "Sequence: red, green, blue", "--out", str(out),
                 "--hi", "1", "--layers", "0-1"]) == 0
    assert "Layer 1" in out.read_text(encoding="utf-8")
    scan_dir = tiny_scan.save(tmp_path / "scan")
    assert main(["site", "--scan", scan_dir, "--model", "tiny", "--out", str(tmp_path / "site"), "--layers", "0",
                 "--neurons", "0-2", "--top-k", "3"]) == 0
    assert (tmp_path / "site" / "L0" / "N2.html").exists()
    assert main(["neuroscope", "--model", "tiny", "--out", str(out), "--relative", "0.99"]) == 2
    assert "needs --scan" in capsys.readouterr().err


def _logit_rows(page: str) -> list[tuple[str, str]]:
    """(token, value) rows of a neuron page's "Direct logit effects" section."""
    section = page.split("<h2>Direct logit effects</h2>")[1].split("<h2>")[0]
    return re.findall(r"<tr><td class='snip'>(.*?)</td><td>([+-]\d+\.\d{3})</td></tr>", section)


def test_logit_effects_through_the_adapter_hf_equals_tl(tiny, tiny_scan, tmp_path):
    hf = ml.models.tiny_lm(device="cpu", backend="hf")
    ml.neuroscope.site(tiny_scan, tiny, tmp_path / "tl", layers=[0], neurons=[7], k=2)
    ml.neuroscope.site(tiny_scan, hf, tmp_path / "hf", layers=[0], neurons=[7], k=2)
    tl_page = open(tmp_path / "tl" / "L0" / "N7.html", encoding="utf-8").read()
    hf_page = open(tmp_path / "hf" / "L0" / "N7.html", encoding="utf-8").read()
    assert "Direct logit effects" in hf_page and "not available" not in hf_page
    rows = _logit_rows(tl_page)
    assert len(rows) == 10 + 5  # default n_logits: 10 top tokens, 5 bottom tokens
    assert _logit_rows(hf_page) == rows  # the tiny LM ties its embeddings: the same top tokens and values


def test_logit_effects_not_available_for_an_encoder(minilm, tmp_path):
    scan = ml.scan(minilm, PROSE[:4], layers=[0], pooling=("mean", "max"), progress=False)
    ml.neuroscope.site(scan, minilm, tmp_path / "site", neurons=[0], k=2)
    page = open(tmp_path / "site" / "L0" / "N0.html", encoding="utf-8").read()
    assert "<h2>Direct logit effects</h2><p class='muted'>not available for this model: " in page
    assert "encoder has no unembedding" in page and not _logit_rows(page)
