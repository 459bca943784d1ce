"""Report pages and the one link check every page that takes ``links`` uses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.errors import CategoryError
from mri_lens.render.html import check_link_url
from mri_lens.render.report import write_mri_report, write_scan_report

BAD = ["javascript:alert(1)", "JavaScript:alert(1)", "  javascript:alert(1)", "\x01\x1fjavascript:alert(1)",
       "java\tscript:alert(1)", "data:text/html,<script>alert(1)</script>", "VBScript:msgbox(1)"]
GOOD = ["../index.html", "site/L0/N1.html#top", "?q=1", "https://example.org/a?b=1&c=2", "HTTP://x.org",
        "file:///tmp/report.html", "N3.html"]


@pytest.mark.parametrize("url", BAD)
def test_check_link_url_refuses_other_schemes(url):
    with pytest.raises(ValueError, match="link URL scheme .* is not allowed"):
        check_link_url(url)


@pytest.mark.parametrize("url", GOOD)
def test_check_link_url_keeps_relative_and_web_urls(url):
    assert check_link_url(url) == url


def test_scan_report_links_checked_and_escaped(tiny_scan, tmp_path):
    with pytest.raises(ValueError, match="link URL scheme 'javascript' is not allowed"):
        write_scan_report(tiny_scan, tmp_path / "bad.html", links=[("click", " javascript:alert(1)")])
    assert not (tmp_path / "bad.html").exists()
    path = write_scan_report(tiny_scan, tmp_path / "r.html",
                             links=[("<b>back</b> & more", "../a b.html?x='1'&y=2")])
    page = open(path, encoding="utf-8").read()
    assert "&lt;b&gt;back&lt;/b&gt; &amp; more" in page and "<b>back" not in page
    assert "href='../a b.html?x=&#x27;1&#x27;&amp;y=2'" in page


def test_mri_report_links_checked(tiny_scan, tmp_path):
    with pytest.raises(ValueError, match="link URL scheme 'data' is not allowed"):
        write_mri_report(None, None, tiny_scan, tmp_path / "mri.html", links=[("x", "data:text/html,hi")])


def test_neuroscope_site_links_checked(tiny, tiny_scan, tmp_path):
    with pytest.raises(ValueError, match="link URL scheme 'javascript' is not allowed"):
        ml.neuroscope.site(tiny_scan, tiny, tmp_path / "site", layers=[0], neurons=[0], k=2,
                           links=lambda l, n: [("evil", "javascript:alert(1)")])
    index = ml.neuroscope.site(tiny_scan, tiny, tmp_path / "ok", layers=[0], neurons=[0], k=2,
                               links=lambda l, n: [("<i>MRI</i>", f"../../mri/L{l}.html#n{n}")])
    chunk = open(tmp_path / "ok" / "data" / "L0_0.js", encoding="utf-8").read()  # links are data: the viewer
    assert '"ln":[["<i>MRI</i>","../../mri/L0.html#n0"]]' in chunk and index  # sets them as text and href


def _three_categories(scan):
    """The same scan with its code documents split in two categories by document parity: three categories."""
    names = np.asarray(scan.label_names)[scan.labels]
    parity = np.where(np.arange(scan.n_docs) % 2 == 0, "code_even", "code_odd")
    new = np.where(names == "prose", "prose", parity)
    label_names = ["code_even", "code_odd", "prose"]
    return dataclasses.replace(scan, labels=np.asarray([label_names.index(x) for x in new]), label_names=label_names)


def test_scan_report_on_more_than_two_categories_compares_each_with_the_rest(tiny_scan, tmp_path):
    from mri_lens.lenses.mri import category_differences

    s3 = _three_categories(tiny_scan)
    page = open(write_scan_report(s3, tmp_path / "r3.html"), encoding="utf-8").read()
    assert "each category against the rest" in page and "categories=(a, b)" in page
    assert "Category differences: code_even vs code_odd" not in page  # never an arbitrary pair
    counts = {c: int((s3.labels == i).sum()) for i, c in enumerate(s3.label_names)}
    for c in s3.label_names:  # the most different neuron of each category against the rest leads its rows
        df = category_differences(s3, c)
        best = df.loc[df["cohens_d"].abs().idxmax()]
        assert f"<td>{c}</td><td>{counts[c]}</td><td>L{int(best['layer'])}/N{int(best['neuron'])}</td>" in page
    one = open(write_scan_report(s3, tmp_path / "r1.html", max_categories=1), encoding="utf-8").read()
    assert "Not compared (2;" in one
    pair = open(write_scan_report(s3, tmp_path / "r2.html", categories=("code_odd", "prose")), encoding="utf-8").read()
    assert "Category differences: code_odd vs prose" in pair and "against the rest" not in pair
    with pytest.raises(CategoryError, match="unknown category 'code'; the scan's categories are 'code_even', "
                                            "'code_odd', 'prose'"):
        write_scan_report(s3, tmp_path / "bad.html", categories=("code", "prose"))
    # one document per category (a label per document): said, not compared
    unique = dataclasses.replace(tiny_scan, labels=np.arange(tiny_scan.n_docs),
                                 label_names=[f"doc{i}" for i in range(tiny_scan.n_docs)])
    page = open(write_scan_report(unique, tmp_path / "u.html"), encoding="utf-8").read()
    assert "No category has two documents and two others: nothing to compare." in page
    two = open(write_scan_report(tiny_scan, tmp_path / "two.html"), encoding="utf-8").read()
    assert "Category differences: code vs prose" in two  # two categories: contrasted


def test_scan_report_links_the_neurons_a_site_has(tiny_scan, tmp_path):
    """Every neuron the report names (:func:`report_neurons`, in page order) is a link to its page when the site
    has one, plain text otherwise; on a three-category scan too."""
    import re

    from mri_lens.render.links import SiteLinks
    from mri_lens.render.report import report_neurons

    for scan, kw in ((tiny_scan, {}), (_three_categories(tiny_scan), {"top_neurons": 2})):
        named = report_neurons(scan, **kw)
        assert len(named) >= 2
        site = SiteLinks("site", {named[0][0]: frozenset([named[0][1]])})
        page = open(write_scan_report(scan, tmp_path / "r.html", site=site, overwrite=True, **kw),
                    encoding="utf-8").read()
        l, n = named[0]
        assert f"<td><a class='neuron' href='site/index.html#L{l}/N{n}'>L{l}/N{n}</a></td>" in page
        ids = re.findall(r"<td>(?:<a class='neuron'[^>]*>)?(L\d+/N\d+)", page)
        assert ids == [f"L{a}/N{b}" for a, b in named]  # the table rows, in order
        assert page.count("class='neuron'") == ids.count(f"L{l}/N{n}") + (f"<h4><a class='neuron'" in page)


def test_scan_report_reads_a_site_directory(tiny_scan, tmp_path):
    """``site=`` a site directory: its manifest says which neurons have pages, linked relatively from the page."""
    import json

    from mri_lens.render.report import report_neurons

    (l, n) = report_neurons(tiny_scan)[0]
    site = tmp_path / "out" / "site"
    site.mkdir(parents=True)
    (site / "manifest.json").write_text(json.dumps({"format": "mri_lens.site", "layers": {str(l): [n]}}))
    page = open(write_scan_report(tiny_scan, tmp_path / "out" / "reports" / "r.html", site=site),
                encoding="utf-8").read()
    assert f"href='../site/index.html#L{l}/N{n}'" in page
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text(json.dumps({"format": "mri_lens.mri_page"}))
    with pytest.raises(ValueError, match="is not a Neuroscope site"):
        write_scan_report(tiny_scan, tmp_path / "x.html", site=tmp_path / "other")


def test_site_links_read_a_manifest_and_link_relatively(tmp_path):
    """A site's manifest lists its neurons (``"format"`` or ``"kind"`` names it): a neuron id becomes a link only
    when its page exists, relative to the linking page, its text escaped."""
    import json

    from mri_lens.render.links import SiteLinks, neuron_link_html, site_links

    site = tmp_path / "demo" / "site"
    site.mkdir(parents=True)
    for key in ("format", "kind"):
        (site / "manifest.json").write_text(json.dumps({key: "mri_lens.site", "layers": {"1": [88, 3]}}))
        links = site_links(site, tmp_path / "demo" / "mri" / "index.html")
        assert links == SiteLinks("../site", {1: frozenset({3, 88})})
    assert links.href(1, 88) == "../site/index.html#L1/N88" and links.href(1, 89) is None and links.href(0, 88) is None
    assert neuron_link_html(links, 1, 88) == "<a class='neuron' href='../site/index.html#L1/N88'>L1/N88</a>"
    assert neuron_link_html(links, 2, 88) == "L2/N88" and neuron_link_html(None, 1, 88, "<N88>") == "&lt;N88&gt;"
    assert site_links(None, "x.html") is None and site_links(links, "x.html") is links
    assert SiteLinks.for_page(site, site / "index.html").rel == "."
