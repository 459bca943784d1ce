"""Neuroscope lens: thresholded selection against brute force, colour bins, escaping, the static site."""

from __future__ import annotations

import os
import re
import statistics

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.adapter import ModelAdapter
from mri_lens.cli import main
from mri_lens.neuroscope import layer_quantile, thresholds

from oracle import per_token_activations

PROMPTS = ["Sequence: red, orange, yellow, green, blue. Next Word:", "def f(x):\n    return x + 1\n"]
NASTY = ["<script>alert(1)</script> &amp; \"quoted\" 'single'\nnew line <b>bold</b>",
         "x = '<script>alert(1)</script>'  # &amp; \"\"\n\tif a < b and c > d:\n        pass"]
HTTP_REF = re.compile(r"""(?:src|href)\s*=\s*["']?https?:|url\(\s*["']?https?:|@import\s+["']?https?:""", re.I)


def _brute_force(model, prompts, layers, select, hi_of, lo_of):
    """Per layer, the set of neurons with some real token beyond the threshold, plus the ambiguous ones (within
    1e-4 of a threshold, where float differences between code paths may flip the answer)."""
    ad = ModelAdapter(model)
    seqs = [s[0] for s in ad.encode(prompts)[0]]
    skip = 1 if ad.is_causal else 0
    acts = per_token_activations(model, seqs, layers)
    out = {}
    for l in layers:
        real = np.concatenate([a[l][skip:] for a in acts])
        hi, lo = hi_of(l), lo_of(l)
        up, down = real.max(0), real.min(0)
        pas = {"hi": up > hi, "lo": down < lo, "either": (up > hi) | (down < lo)}[select]
        amb = np.zeros_like(pas)
        if select in ("hi", "either"):
            amb |= np.abs(up - hi) < 1e-4
        if select in ("lo", "either"):
            amb |= np.abs(down - lo) < 1e-4
        out[l] = (set(np.flatnonzero(pas).tolist()), set(np.flatnonzero(amb).tolist()))
    return out


def _check(view, expected):
    for l, (want, amb) in expected.items():
        got = set(view.neurons[l].tolist())
        assert not (got ^ want) - amb, f"layer {l}"
        assert view.n_candidates[l] == len(got)


@pytest.fixture(scope="module")
def minilm_scan(minilm):
    from conftest import PROSE

    return ml.scan(minilm, PROSE[:8], batch_size=8, pooling=("mean", "max"), progress=False)


@pytest.mark.parametrize("select", ["hi", "lo", "either"])
def test_selection_absolute_matches_bruteforce_tiny(tiny, select):
    view = ml.neuroscope(tiny, PROMPTS, hi=1.0, lo=-0.1, select=select, max_neurons_per_layer=None)
    _check(view, _brute_force(tiny, PROMPTS, view.layers, select, lambda l: 1.0, lambda l: -0.1))
    assert view.n_excluded_prefix == 1  # BOS shown, not selected
    assert all(len(view.str_tokens[p]) == view.activations[0][p].shape[0] for p in range(len(PROMPTS)))


@pytest.mark.parametrize("select", ["hi", "lo", "either"])
@pytest.mark.parametrize("relative_to", ["neuron", "layer"])
def test_selection_relative_matches_bruteforce_tiny(tiny, tiny_scan, select, relative_to):
    q = 0.99
    view = ml.neuroscope(tiny, PROMPTS, relative=q, relative_to=relative_to, scan=tiny_scan, select=select,
                         max_neurons_per_layer=None, layers=[0, 3])
    if relative_to == "neuron":
        qs = tiny_scan.stats.quantile(np.array([q, 1 - q]))
        hi_of = lambda l: qs[0, tiny_scan.layer_index(l)]
        lo_of = lambda l: qs[1, tiny_scan.layer_index(l)]
    else:
        hi_of = lambda l: layer_quantile(tiny_scan.stats, tiny_scan.layer_index(l), q)
        lo_of = lambda l: layer_quantile(tiny_scan.stats, tiny_scan.layer_index(l), 1 - q)
    _check(view, _brute_force(tiny, PROMPTS, [0, 3], select, hi_of, lo_of))


@pytest.mark.parametrize("select", ["hi", "lo", "either"])
def test_selection_matches_bruteforce_minilm(minilm, minilm_scan, select):
    view = ml.neuroscope(minilm, PROMPTS, hi=0.5, lo=-0.15, select=select, max_neurons_per_layer=None,
                         layers=[0, 5])
    assert view.n_excluded_prefix == 0  # encoder: [CLS] and [SEP] are real tokens
    _check(view, _brute_force(minilm, PROMPTS, [0, 5], select, lambda l: 0.5, lambda l: -0.15))
    q = 0.95
    qs = minilm_scan.stats.quantile(np.array([q, 1 - q]))
    rel = ml.neuroscope(minilm, PROMPTS, relative=q, scan=minilm_scan, select=select, max_neurons_per_layer=None,
                        layers=[0, 5])
    _check(rel, _brute_force(minilm, PROMPTS, [0, 5], select, lambda l: qs[0, l], lambda l: qs[1, l]))


def test_layer_quantile_close_to_numpy(tiny, tiny_scan, code_prose):
    ad = ModelAdapter(tiny)
    seqs = [s[0] for s in ad.encode(code_prose.texts)[0]]
    acts = per_token_activations(tiny, seqs, [1])
    allv = np.concatenate([a[1][1:] for a in acts]).ravel()
    width = np.max(np.diff(tiny_scan.stats.hist_edges))
    for q in (0.9, 0.99, 0.01):
        assert abs(layer_quantile(tiny_scan.stats, 1, q) - np.quantile(allv, q)) <= width + 1e-6


def test_sort_cap_and_coverage(tiny):
    full = ml.neuroscope(tiny, PROMPTS, hi=0.5, max_neurons_per_layer=None, layers=[2])
    capped = ml.neuroscope(tiny, PROMPTS, hi=0.5, max_neurons_per_layer=7, layers=[2])
    assert capped.neurons[2].tolist() == full.neurons[2][:7].tolist()
    assert np.all(np.diff(full.max_activation[2]) <= 0)
    by_cov = ml.neuroscope(tiny, PROMPTS, hi=0.5, sort="coverage", max_neurons_per_layer=None, layers=[2])
    assert np.all(np.diff(by_cov.coverage[2]) <= 0)
    assert set(by_cov.neurons[2].tolist()) == set(full.neurons[2].tolist())
    # coverage: fraction of real tokens (BOS excluded) above hi
    n_real = sum(len(t) - 1 for t in full.str_tokens)
    j = 0
    n = full.neurons[2][j]
    hits = sum(int((a[1:, j] > 0.5).sum()) for a in full.activations[2])
    assert full.coverage[2][j] == pytest.approx(hits / n_real)
    assert full.candidate_coverage[2].shape == (full.n_candidates[2],)
    assert n >= 0


def test_bin_boundaries_exact():
    b = ml.ColorBins()
    vals = [3.5000001, 3.5, 3.0000001, 3.0, 1.0, 0.0, -1e-9, -5.0, float("nan")]
    assert b.bin(vals).tolist() == ["red", "orange", "orange", "grey", "grey", "grey", "blue", "blue", "grey"]
    c = ml.ColorBins(red=1.0, orange=0.5, lo=-0.5)
    assert c.bin([1.0, 1.01, 0.5, 0.51, -0.5, -0.51]).tolist() == ["orange", "red", "grey", "orange", "grey", "blue"]
    assert c.codes(np.array([[2.0, -1.0]])).tolist() == [[3, 0]]
    with pytest.raises(ValueError, match="lo <= orange <= red"):
        ml.ColorBins(red=1.0, orange=2.0)
    with pytest.raises(ValueError, match="finite"):
        ml.ColorBins(red=float("inf"))


def test_view_html_bins_and_errors(tiny, tiny_scan):
    view = ml.neuroscope(tiny, PROMPTS, hi=1.0, layers=[0, 1], max_neurons_per_layer=3)
    page = view._repr_html_()
    for name in ("red", "orange", "grey", "blue"):
        assert name in page  # legend
    a = view.activations[0][0][:, 0]
    want = ["nb-" + "bgor"[c] for c in view.bins.codes(a)]
    got = re.findall(r"class='(nb-[bgor])", page.split("<table>")[1])[:len(a)]
    assert got == want
    assert "<script" not in page
    with pytest.raises(ValueError, match="select must be one of"):
        ml.neuroscope(tiny, PROMPTS, select="up")
    with pytest.raises(ValueError, match="sort must be one of"):
        ml.neuroscope(tiny, PROMPTS, sort="min")
    with pytest.raises(ValueError, match="need a scan"):
        ml.neuroscope(tiny, PROMPTS, relative=0.99)
    with pytest.raises(ValueError, match=r"relative must be a quantile in \(0.5, 1\)"):
        ml.neuroscope(tiny, PROMPTS, relative=0.2, scan=tiny_scan)
    with pytest.raises(ValueError, match="lo < hi"):
        ml.neuroscope(tiny, PROMPTS, hi=0.0, lo=1.0, select="either")
    with pytest.raises(ValueError, match="finite"):
        ml.neuroscope(tiny, PROMPTS, hi=float("nan"))
    only0 = ml.scan(tiny, PROMPTS, layers=[0], progress=False)
    with pytest.raises(ml.ScanError, match="layer 1 was not scanned"):
        ml.neuroscope(tiny, PROMPTS, relative=0.99, scan=only0, layers=[0, 1])
    with pytest.raises(ml.ScanError, match="not in this view"):
        view.circuitsvis(3)


def test_lo_above_hi_is_refused(tiny):
    for select in ("hi", "lo"):
        with pytest.raises(ValueError, match=r"lo must not be greater than hi, got lo=2, hi=-1"):
            ml.neuroscope(tiny, PROMPTS, hi=-1, lo=2, select=select)
    with pytest.raises(ValueError, match="lo must not be greater than hi"):
        thresholds([0], 4, hi=-1.0, lo=2.0, relative=None, relative_to="neuron")
    # an omitted threshold follows the given one; lo == hi is allowed outside select="either"
    v = ml.neuroscope(tiny, PROMPTS, hi=-100.0, layers=[0], max_neurons_per_layer=1)
    assert float(v.lo[0][0]) == -100.0
    v = ml.neuroscope(tiny, PROMPTS, lo=5.0, select="lo", layers=[0], max_neurons_per_layer=1)
    assert float(v.hi[0][0]) == 5.0
    ml.neuroscope(tiny, PROMPTS, hi=1.0, lo=1.0, layers=[0], max_neurons_per_layer=1)
    with pytest.raises(ValueError, match="lo < hi"):
        ml.neuroscope(tiny, PROMPTS, hi=1.0, lo=1.0, select="either")
    # the colour bins refuse inconsistent boundaries the same way
    with pytest.raises(ValueError, match="lo <= orange <= red"):
        ml.ColorBins(red=3.0, orange=1.0, lo=2.0)


def test_escaping_everywhere(tiny, tmp_path):
    view = ml.neuroscope(tiny, NASTY, hi=-100.0, max_neurons_per_layer=2, layers=[0])
    path = view.save_html(tmp_path / "view.html")
    cv = view.circuitsvis(0)
    props = cv.src.split("CircuitsVis.TextNeuronActivations,")[1]  # the offline bundle comes before the props
    assert "&lt;" in props and '" &amp;"' in props and '"<' not in props and '" <' not in props
    assert "unpkg.com" not in cv.src  # never the CDN version
    scan = ml.scan(tiny, NASTY * 3, batch_size=6, pooling=("mean", "max"), progress=False, layers=[0])
    ml.neuroscope_site(scan, tiny, tmp_path / "site", neurons=range(4), k=3)
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
    index = ml.neuroscope_site(tiny_scan, tiny, out, layers=[0], k=20)
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
    a = ml.neuroscope_site(tiny_scan, tiny, tmp_path / "a", layers=[1], neurons=range(6), k=5)
    b = ml.neuroscope_site(tiny_scan, tiny, tmp_path / "b", layers=[1], neurons=range(6), k=5)
    for root, _, files in os.walk(tmp_path / "a"):
        for f in files:
            pa = os.path.join(root, f)
            pb = pa.replace(str(tmp_path / "a"), str(tmp_path / "b"))
            assert open(pa, "rb").read() == open(pb, "rb").read(), f
    v1 = ml.neuroscope(tiny, PROMPTS, hi=1.0).to_html()
    v2 = ml.neuroscope(tiny, PROMPTS, hi=1.0).to_html()
    assert v1 == v2 and a != b


def test_site_errors(tiny, tiny_scan, tmp_path):
    with pytest.raises(ml.ScanError, match="layer 9 was not scanned"):
        ml.neuroscope_site(tiny_scan, tiny, tmp_path / "x", layers=[9])
    with pytest.raises(ml.ScanError, match="neurons must be in"):
        ml.neuroscope_site(tiny_scan, tiny, tmp_path / "x", neurons=[600])


def test_summary_figure_and_prompts(tiny):
    prompts = ml.prompts.sequence_prompts()
    assert len(prompts) == 3 and "indigo" in prompts[0] and "banana" in prompts[1] and "7 -> 9" in prompts[2]
    view = ml.neuroscope(tiny, prompts, hi=1.0)
    fig = view.summary_figure()
    assert list(fig.data[0].y) == [view.n_candidates[l] for l in view.layers]
    assert len(fig.data) == 1 + len(view.layers)


def test_cli_neuroscope_and_site(tiny_scan, tmp_path, capsys):
    out = tmp_path / "view.html"
    assert main(["neuroscope", "--model", "tiny", "--prompt", "Sequence: red, green, blue", "--out", str(out),
                 "--hi", "1", "--layers", "0-1"]) == 0
    assert "Layer 1" in out.read_text(encoding="utf-8")
    scan_dir = tiny_scan.save(tmp_path / "scan")
    assert main(["site", "--scan", scan_dir, "--model", "tiny", "--out", str(tmp_path / "site"), "--layers", "0",
                 "--neurons", "0-2", "--k", "3"]) == 0
    assert (tmp_path / "site" / "L0" / "N2.html").exists()
    assert main(["neuroscope", "--model", "tiny", "--out", str(out), "--relative", "0.99"]) == 2
    assert "needs --scan" in capsys.readouterr().err
