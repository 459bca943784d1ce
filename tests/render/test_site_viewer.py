"""The Neuroscope site's viewer in a real browser (headless Chromium through selenium) from ``file://``: the index
loads and its search finds a neuron, a neuron page opens by its fragment and by a click, its histogram and examples
are drawn, previous / next work, a full text unfolds from its data file, tokens that look like markup stay text (in
snippets and in an N2G graph), nothing logs a severe error, and at 420 px nothing scrolls the page sideways.

Skips with a clear message where no browser can run (CI installs Debian's chromium and chromium-driver)."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from lenses.n2g.builders import _synthetic_graph
from render.browser import start_chromium

import mri_lens as ml

from corpora import PROSE

XSS = "<script>alert(1)</script>"
TEXTS = PROSE[:6] + [f"{XSS} & <b>bold</b>\nx = 1", f"y = '{XSS}'  # <i>it</i>"]


@pytest.fixture(scope="module")
def site(tiny, tmp_path_factory):
    scan = ml.scan(tiny, ml.Corpus(TEXTS, ["prose"] * 6 + ["markup"] * 2), layers=[0], pooling=("mean", "max"), progress=False)
    g = _synthetic_graph({5: XSS, 6: "&amp;'\""})
    g.scores = {"n2g": {"firing_f1": 0.8, "firing_precision": 0.75, "a_new_score": 0.5},
                "token_lookup": {"firing_f1": 0.6}, "n_test_texts": 5}
    out = tmp_path_factory.mktemp("viewer") / "site"
    ml.neuroscope.site(scan, tiny, out, neurons=range(6), k=4, n_random=len(TEXTS), n2g={(0, 3): g},
                       links=lambda l, n: [("MRI region", f"../mri/index.html#L{l}")], progress=False)
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), width=1400, console_log=True)
    yield driver
    driver.quit()


def _wait(driver, script: str, *args, timeout: float = 30.0):
    """Poll ``script`` until it returns something truthy; return that."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(script, *args)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def _open(driver, site, fragment: str = "") -> None:
    driver.get("file://" + os.path.abspath(os.path.join(site, "index.html")) + fragment)
    _wait(driver, "return document.readyState === 'complete'")


def _heading(driver, text: str) -> None:
    _wait(driver, "var h = document.querySelector('h1'); return h && h.textContent === arguments[0]", text)


def _severe(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_index_search_and_click(browser, site):
    _open(browser, site)
    _wait(browser, "return document.querySelectorAll('table.index tbody tr').length === 6")
    rows = json.loads(re.search(r"MRI_SITE\.index\((.*)\);", open(os.path.join(site, "data", "index.js")).read(),
                                re.S).group(1))["rows"]["0"]
    tokens = json.loads(re.search(r"MRI_SITE\.tokens\((.*)\);", open(os.path.join(site, "data", "tokens.js")).read(),
                                  re.S).group(1))
    n, word = rows[2][0], tokens[rows[2][6][0]]  # a neuron and its top token
    box = browser.find_element("id", "search")
    box.send_keys(word)
    hits = _wait(browser, "var a = document.querySelectorAll('#results a'); return a.length && "
                          "Array.prototype.map.call(a, function (x) { return x.textContent; })")
    assert f"L0/N{n}" in hits
    browser.find_element("css selector", "table.index tbody tr a").click()
    first = browser.execute_script("return location.hash")
    _heading(browser, first[1:])
    assert not _severe(browser)


def test_neuron_page(browser, site):
    _open(browser, site, "#L0/N3")
    _heading(browser, "L0/N3")
    assert browser.execute_script("return document.querySelectorAll('svg.hist rect').length") > 3
    assert "activation" in browser.execute_script("return document.querySelector('svg.hist').textContent")
    assert browser.execute_script("return document.querySelectorAll('.ex .snip span').length") > 20
    assert browser.execute_script("return document.querySelectorAll('.snip .mx').length") >= 4
    text = browser.execute_script("return document.body.textContent")
    for part in ("Explanation (Neuron to Graph)", "On firing F1, n2g explains this neuron best (0.8)",
                 "a_new_score", "token_lookup", "Similar neurons", "Direct logit effects", "Ablation effect",
                 "Mean activation per category", "Random examples"):
        assert part in text, part
    # markup in tokens is text: in the snippets and in the N2G graph, and no script element holds it
    assert XSS in browser.execute_script("return document.querySelector('.n2g svg').textContent")
    assert any(XSS in s for s in browser.execute_script(
        "return Array.prototype.map.call(document.querySelectorAll('.snip'), function (s) { return s.textContent; })"))
    assert browser.execute_script("return Array.prototype.filter.call(document.querySelectorAll('script, b, i'), "
                                  "function (s) { return /alert|bold|it/.test(s.textContent); }).length") == 0
    assert browser.execute_script("return document.querySelector('nav a[href=\"../mri/index.html#L0\"]') !== null")
    # the log toggle redraws the histogram; a full text unfolds from its data file
    browser.find_element("css selector", ".histbox input").click()
    _wait(browser, "return document.querySelector('svg.hist').textContent.indexOf('log scale') >= 0")
    browser.find_element("css selector", ".ex details summary").click()
    _wait(browser, "return document.querySelectorAll('.ex .full span, .ex .full mark').length > 0")
    # previous / next
    browser.find_element("partial link text", "L0/N4").click()
    _heading(browser, "L0/N4")
    browser.find_element("partial link text", "L0/N3").click()
    _heading(browser, "L0/N3")
    _open(browser, site, "#L0/N77")
    _heading(browser, "L0/N77")
    assert "no page for this neuron" in browser.execute_script("return document.body.textContent")
    assert not _severe(browser)


def test_narrow_screen(browser, site, tmp_path):
    browser.set_window_size(420, 900)
    try:
        for fragment in ("", "#L0/N3"):
            _open(browser, site, fragment)
            _wait(browser, "return document.querySelector('h1') !== null && "
                           "document.querySelector('#loading') === null && document.querySelector('h1').textContent")
            if fragment:
                _heading(browser, "L0/N3")
            widths = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert widths[0] <= widths[1], (fragment, widths)
            box = browser.execute_script("var r = document.querySelector(arguments[0]).getBoundingClientRect(); "
                                         "return [r.left, r.right]", "svg.hist" if fragment else "table.index")
            assert box[0] >= 0 and (box[1] <= widths[1] or not fragment)
        browser.save_screenshot(str(tmp_path / "neuron_420.png"))
    finally:
        browser.set_window_size(1400, 1000)
    assert not _severe(browser)
