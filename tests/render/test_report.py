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
    page = open(tmp_path / "ok" / "L0" / "N0.html", encoding="utf-8").read()
    assert "href='../../mri/L0.html#n0'>&lt;i&gt;MRI&lt;/i&gt;</a>" in page and index


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
        assert f"<td>{c}</td><td>{counts[c]}</td><td>{int(best['layer'])}</td><td>{int(best['neuron'])}</td>" in page
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
