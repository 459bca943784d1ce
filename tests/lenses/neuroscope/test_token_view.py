"""Neuroscope lens, thresholded token views: selection against brute force, colour bins, the HTML view."""

from __future__ import annotations

import re

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.model.adapter import ModelAdapter
from mri_lens.lenses.neuroscope.token_view import layer_quantile, thresholds

from corpora import NEUROSCOPE_PROMPTS as PROMPTS
from oracle import per_token_activations


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
    from corpora import PROSE

    return ml.scan(minilm, PROSE[:8], batch_size=8, pooling=("mean", "max"), progress=False)


@pytest.mark.parametrize("select", ["hi", "lo", "either"])
def test_selection_absolute_matches_bruteforce_tiny(tiny, select):
    view = ml.neuroscope.view(tiny, PROMPTS, hi=1.0, lo=-0.1, select=select, max_neurons_per_layer=None)
    _check(view, _brute_force(tiny, PROMPTS, view.layers, select, lambda l: 1.0, lambda l: -0.1))
    assert view.n_excluded_prefix == 1  # BOS shown, not selected
    assert all(len(view.str_tokens[p]) == view.activations[0][p].shape[0] for p in range(len(PROMPTS)))


@pytest.mark.parametrize("select", ["hi", "lo", "either"])
@pytest.mark.parametrize("relative_to", ["neuron", "layer"])
def test_selection_relative_matches_bruteforce_tiny(tiny, tiny_scan, select, relative_to):
    q = 0.99
    view = ml.neuroscope.view(tiny, PROMPTS, relative=q, relative_to=relative_to, scan=tiny_scan, select=select,
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
    view = ml.neuroscope.view(minilm, PROMPTS, hi=0.5, lo=-0.15, select=select, max_neurons_per_layer=None,
                         layers=[0, 5])
    assert view.n_excluded_prefix == 0  # encoder: [CLS] and [SEP] are real tokens
    _check(view, _brute_force(minilm, PROMPTS, [0, 5], select, lambda l: 0.5, lambda l: -0.15))
    q = 0.95
    qs = minilm_scan.stats.quantile(np.array([q, 1 - q]))
    rel = ml.neuroscope.view(minilm, PROMPTS, relative=q, scan=minilm_scan, select=select, max_neurons_per_layer=None,
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
    """Every layer-2 neuron with a real token above ``hi`` is selected and none other; each selected neuron's
    activations, maximum and coverage equal those of a plain ``run_with_cache`` of each prompt alone; the sort
    orders and the cap follow those numbers."""
    hi = 0.5
    full = ml.neuroscope.view(tiny, PROMPTS, hi=hi, max_neurons_per_layer=None, layers=[2])
    ad = ModelAdapter(tiny)
    acts = [a[2] for a in per_token_activations(tiny, [s[0] for s in ad.encode(PROMPTS)[0]], [2])]
    real = np.concatenate([a[1:] for a in acts])  # [n_real_tokens, d_mlp]: BOS is shown, not counted
    up = real.max(0)
    want, amb = set(np.flatnonzero(up > hi).tolist()), set(np.flatnonzero(np.abs(up - hi) < 1e-4).tolist())
    got = full.neurons[2].tolist()
    assert len(got) == len(set(got)) == full.n_candidates[2] and not (set(got) ^ want) - amb
    assert len(want) >= 5  # enough neurons pass for the orders below to mean something
    for j, n in enumerate(got):
        for p, a in enumerate(acts):
            np.testing.assert_allclose(full.activations[2][p][:, j], a[:, n], atol=1e-4)
        assert full.max_activation[2][j] == pytest.approx(up[n], abs=1e-4)
        lo_hits, hi_hits = (real[:, n] > hi + 1e-4).sum(), (real[:, n] > hi - 1e-4).sum()
        assert lo_hits / len(real) - 1e-9 <= full.coverage[2][j] <= hi_hits / len(real) + 1e-9
    assert got == sorted(got, key=lambda n: -up[n])  # sort="max": strongest first
    np.testing.assert_allclose(np.sort(full.candidate_coverage[2]), np.sort(full.coverage[2]))
    capped = ml.neuroscope.view(tiny, PROMPTS, hi=hi, max_neurons_per_layer=7, layers=[2])
    assert capped.neurons[2].tolist() == got[:7] and capped.n_candidates[2] == len(got)
    by_cov = ml.neuroscope.view(tiny, PROMPTS, hi=hi, sort="coverage", max_neurons_per_layer=None, layers=[2])
    assert set(by_cov.neurons[2].tolist()) == set(got)
    cov = dict(zip(got, full.coverage[2]))
    assert [cov[n] for n in by_cov.neurons[2].tolist()] == sorted(cov.values(), reverse=True)


def test_bin_boundaries_exact():
    b = ml.neuroscope.ColorBins()
    vals = [3.5000001, 3.5, 3.0000001, 3.0, 1.0, 0.0, -1e-9, -5.0, float("nan")]
    assert b.bin(vals).tolist() == ["red", "orange", "orange", "grey", "grey", "grey", "blue", "blue", "grey"]
    c = ml.neuroscope.ColorBins(red=1.0, orange=0.5, lo=-0.5)
    assert c.bin([1.0, 1.01, 0.5, 0.51, -0.5, -0.51]).tolist() == ["orange", "red", "grey", "orange", "grey", "blue"]
    assert c.codes(np.array([[2.0, -1.0]])).tolist() == [[3, 0]]
    with pytest.raises(ValueError, match="lo <= orange <= red"):
        ml.neuroscope.ColorBins(red=1.0, orange=2.0)
    with pytest.raises(ValueError, match="finite"):
        ml.neuroscope.ColorBins(red=float("inf"))


def test_view_html_bins_and_errors(tiny, tiny_scan):
    view = ml.neuroscope.view(tiny, PROMPTS, hi=1.0, layers=[0, 1], max_neurons_per_layer=3)
    page = view._repr_html_()
    for name in ("red", "orange", "grey", "blue"):
        assert name in page  # legend
    a = view.activations[0][0][:, 0]
    want = ["nb-" + "bgor"[c] for c in view.bins.codes(a)]
    got = re.findall(r"class='(nb-[bgor])", page.split("<table>")[1])[:len(a)]
    assert got == want
    assert "<script" not in page
    with pytest.raises(ValueError, match="select must be one of"):
        ml.neuroscope.view(tiny, PROMPTS, select="up")
    with pytest.raises(ValueError, match="sort must be one of"):
        ml.neuroscope.view(tiny, PROMPTS, sort="min")
    with pytest.raises(ValueError, match="need a scan"):
        ml.neuroscope.view(tiny, PROMPTS, relative=0.99)
    with pytest.raises(ValueError, match=r"relative must be a quantile in \(0.5, 1\)"):
        ml.neuroscope.view(tiny, PROMPTS, relative=0.2, scan=tiny_scan)
    with pytest.raises(ValueError, match="lo < hi"):
        ml.neuroscope.view(tiny, PROMPTS, hi=0.0, lo=1.0, select="either")
    with pytest.raises(ValueError, match="finite"):
        ml.neuroscope.view(tiny, PROMPTS, hi=float("nan"))
    only0 = ml.scan(tiny, PROMPTS, layers=[0], progress=False)
    with pytest.raises(ml.ScanError, match="layer 1 was not scanned"):
        ml.neuroscope.view(tiny, PROMPTS, relative=0.99, scan=only0, layers=[0, 1])
    with pytest.raises(ml.ScanError, match="not in this view"):
        view.circuitsvis(3)


def test_lo_above_hi_is_refused(tiny):
    for select in ("hi", "lo"):
        with pytest.raises(ValueError, match=r"lo must not be greater than hi, got lo=2, hi=-1"):
            ml.neuroscope.view(tiny, PROMPTS, hi=-1, lo=2, select=select)
    with pytest.raises(ValueError, match="lo must not be greater than hi"):
        thresholds([0], 4, hi=-1.0, lo=2.0, relative=None, relative_to="neuron")
    # an omitted threshold follows the given one; lo == hi is allowed outside select="either"
    v = ml.neuroscope.view(tiny, PROMPTS, hi=-100.0, layers=[0], max_neurons_per_layer=1)
    assert float(v.lo[0][0]) == -100.0
    v = ml.neuroscope.view(tiny, PROMPTS, lo=5.0, select="lo", layers=[0], max_neurons_per_layer=1)
    assert float(v.hi[0][0]) == 5.0
    ml.neuroscope.view(tiny, PROMPTS, hi=1.0, lo=1.0, layers=[0], max_neurons_per_layer=1)
    with pytest.raises(ValueError, match="lo < hi"):
        ml.neuroscope.view(tiny, PROMPTS, hi=1.0, lo=1.0, select="either")
    # the colour bins refuse inconsistent boundaries the same way
    with pytest.raises(ValueError, match="lo <= orange <= red"):
        ml.neuroscope.ColorBins(red=3.0, orange=1.0, lo=2.0)


def test_summary_figure(tiny):
    prompts = ml.neuroscope.prompts.sequence_prompts()
    view = ml.neuroscope.view(tiny, prompts, hi=1.0)
    fig = view.summary_figure()
    assert list(fig.data[0].y) == [view.n_candidates[l] for l in view.layers]
    assert len(fig.data) == 1 + len(view.layers)


def test_view_keeps_line_breaks(tiny):
    view = ml.neuroscope.view(tiny, ["a = 1\nb = 2\tc"], hi=-100.0, layers=[0], max_neurons_per_layer=1)
    page = view.to_html()
    assert "white-space:pre-wrap" in page.split(".nsv .toks{")[1].split("}")[0]  # the token cells keep newlines
    assert "&#8629;\n" in page and "&#8677;" in page and "<br>" not in page.split("<td class='toks'")[1]


def test_save_html_standalone_or_shared_plotly_asset(tiny, tmp_path):
    view = ml.neuroscope.view(tiny, PROMPTS, hi=1.0, layers=[0, 1])
    alone = open(view.save_html(tmp_path / "alone.html", summary=True), encoding="utf-8").read()
    assert "plotly.js v" in alone and "plotly-graph-div" in alone  # plotly.js inlined: a standalone page
    assert not (tmp_path / "assets").exists()
    (tmp_path / "demo").mkdir()
    path = view.save_html(tmp_path / "demo" / "view.html", summary=True, assets=tmp_path / "demo")
    page = open(path, encoding="utf-8").read()
    ref = re.search(r"<script src='(assets/plotly-[^']+\.min\.js)'>", page)
    assert ref and (tmp_path / "demo" / ref.group(1)).is_file()  # the shared asset, referenced relatively
    assert "plotly.js v" not in page and "plotly-graph-div" in page and "Layer 1" in page
    (tmp_path / "foreign.html").write_text("<html>not ours</html>")
    with pytest.raises(ml.ScanFileError, match="refusing to replace it"):
        view.save_html(tmp_path / "foreign.html")
    assert view.save_html(tmp_path / "foreign.html", overwrite=True)


def test_view_rows_are_left_aligned(tiny):
    """Notebook front ends right-align table cells: every cell of the view says left."""
    page = ml.neuroscope.view(tiny, PROMPTS, hi=1.0, layers=[0], max_neurons_per_layer=3)._repr_html_()
    cells = re.findall(r"<td[^>]*>", page)
    assert len(cells) == 6 and all("text-align:left" in c for c in cells)
    assert ".nsv td{" in page and "text-align:left}" in page.split(".nsv td{")[1].split(".nsv")[0]


def test_view_links_the_neuron_ids_a_site_has(tiny, tmp_path):
    """Each neuron id of the view is a link to its page when the site has one (``to_html(site=)`` with links
    relative to where it is shown, ``save_html(site=)`` with a site directory, linked relatively from the page)."""
    import json

    from mri_lens.render.links import SiteLinks

    view = ml.neuroscope.view(tiny, PROMPTS, hi=1.0, layers=[0, 1], max_neurons_per_layer=3)
    (l0, a), (l1, b) = (0, int(view.neurons[0][0])), (1, int(view.neurons[1][1]))
    page = view.to_html(site=SiteLinks("s", {l0: frozenset([a]), l1: frozenset([b])}))
    ids = re.findall(r"<td class='nid'[^>]*>(.*?)<br>", page)
    assert len(ids) == 6
    linked = [i for i in ids if i.startswith("<a ")]
    assert linked == [f"<a class='neuron' href='s/index.html#L0/N{a}'>L0/N{a}</a>",
                      f"<a class='neuron' href='s/index.html#L1/N{b}'>L1/N{b}</a>"]
    assert [i for i in ids if not i.startswith("<a ")] == [f"L{l}/N{n}" for l in (0, 1) for n in view.neurons[l]
                                                          if (l, n) not in ((l0, a), (l1, b))]
    site = tmp_path / "demo" / "site"
    site.mkdir(parents=True)
    (site / "manifest.json").write_text(json.dumps({"format": "mri_lens.site", "layers": {"0": [a]}}))
    saved = open(view.save_html(tmp_path / "demo" / "view.html", site=site), encoding="utf-8").read()
    assert f"href='site/index.html#L0/N{a}'" in saved and saved.count("class='neuron'") == 1
    assert "class='neuron'" not in view.to_html()
