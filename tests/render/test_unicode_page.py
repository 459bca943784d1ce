"""Non-ASCII text on pages: the token escaper shows invisible characters and bidirectional controls as markers,
and a Neuroscope view and a neuron site of a scan of Arabic, emoji, combining marks, a BOM and U+202E show every
character in a real browser (headless Chromium through selenium), none as U+FFFD, with nothing reordered.

The browser tests skip with a clear message where no browser can run (CI installs Debian's chromium and
chromium-driver)."""

from __future__ import annotations

import os
import time

import pytest

from render.browser import start_chromium

import mri_lens as ml
from mri_lens.render.html import escape, escape_token


TEXTS = [
    "مرحبا بالعالم، هذا نص عربي.",
    "family 👩\u200d👩\u200d👧 thumbs 👍🏽 done",
    "e\u0301 a\u0308 n\u0303 end",
    "\ufeffBOM at the start",
    "left abc \u202edef ghi jkl mno",
    "Ação: paciënt é febril. 患者发烧三天。",
]
# what each text must show on a page: its visible characters, and markers for the invisible ones
SHOWN = ["م", "ر", "ع", "👩", "👧", "👍", "🏽", "\u0301", "\u0308", "\u0303", "<U+FEFF>", "<U+202E>", "<U+200D>",
         "ç", "ã", "ë", "é", "患", "烧", "。"]


# ---------------------------------------------------------------------------------------------- the escaper
def test_bidi_controls_never_reach_a_page_raw():
    for ch in ("\u202e", "\u202b", "\u2067", "\u200f", "\u061c"):
        assert ch not in escape(f"a{ch}b") and ch not in escape_token(f"a{ch}b")
    assert escape("x\u202ey") == "x&lt;U+202E&gt;y"
    assert escape("مرحبا 👩") == "مرحبا 👩"  # other text is untouched


def test_tokens_show_invisible_characters():
    assert escape_token("\ufeff") == "<bdi dir='ltr'>&lt;U+FEFF&gt;</bdi>"
    assert escape_token("\ufeffB") == "<bdi dir='ltr'>&lt;U+FEFF&gt;</bdi>B"
    assert escape_token("\u200b") == "<bdi dir='ltr'>&lt;U+200B&gt;</bdi>"
    assert escape_token("\u200d") == "<bdi dir='ltr'>&lt;U+200D&gt;</bdi>"  # a lone joiner
    assert escape_token("👩\u200d👧") == "👩\u200d👧"  # a joiner between characters keeps shaping them
    assert escape_token("\u0301") == "\u25cc\u0301"  # a lone combining mark sits on a dotted circle
    assert escape_token("e\u0301") == "e\u0301"
    assert escape_token("a\n") == "a&#8629;\n"
    # the bytes of a split character are isolated left to right: they never take part in right-to-left runs
    assert escape_token("<0xD8>") == "<bdi dir='ltr'>&lt;0xD8&gt;</bdi>"
    assert escape_token("<b>") == "&lt;b&gt;"


# ---------------------------------------------------------------------------------------------- in a browser
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), width=1400)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def unicode_scan(tiny):
    return ml.scan(tiny, ml.Corpus(TEXTS), top_k=len(TEXTS), pooling=("mean", "max"), progress=False)


def _open(driver, path: str) -> None:
    driver.get("file://" + os.path.abspath(path))
    deadline = time.time() + 60
    while time.time() < deadline and driver.execute_script("return document.readyState") != "complete":
        time.sleep(0.1)


# The tokens after U+202E on its line (one span per token, all left-to-right text) must run left to right in
# document order: a raw U+202E would lay out the rest of its line right to left. Returns the pairs out of order,
# or null when no token holds U+202E (raw or as its marker).
_REVERSED = """
var bad = [], found = false;
document.querySelectorAll(arguments[0]).forEach(function(box){
  var spans = Array.prototype.slice.call(box.querySelectorAll('span, mark'));
  var at = spans.findIndex(function(s){var t = s.textContent;
    return t.indexOf('<U+202E>') >= 0 || t.indexOf('\\u202e') >= 0;});
  if (at < 0) return;
  found = true;
  var top = spans[at].getBoundingClientRect().top;
  for (var i = at + 1; i < spans.length; i++) {
    var a = spans[i - 1].getBoundingClientRect(), b = spans[i].getBoundingClientRect();
    if (Math.abs(b.top - top) > 2) break;
    if (b.width && b.left < a.left - 0.5) bad.push(spans[i - 1].textContent + ' | ' + spans[i].textContent);
  }
});
return found ? bad : null;
"""


def _check_page(driver, token_boxes: str) -> str:
    text = driver.execute_script("return document.body.textContent")
    assert "\ufffd" not in text
    assert "\u202e" not in text
    missing = [c for c in SHOWN if c not in text]
    assert not missing, missing
    assert "<0xF0>" in text  # the first bytes of a split emoji, shown on their own tokens
    n_boxes = driver.execute_script("return document.querySelectorAll(arguments[0]).length", token_boxes)
    assert n_boxes > 0
    assert driver.execute_script(_REVERSED, token_boxes) == []
    return text


@pytest.mark.slow
def test_neuroscope_view_shows_every_character(browser, tiny, tmp_path):
    view = ml.neuroscope.view(tiny, TEXTS, layers=[0, 1], hi=0.0, select="hi", max_neurons_per_layer=2)
    path = view.save_html(tmp_path / "view.html", title="unicode ✓ \u202eview")
    _open(browser, path)
    _check_page(browser, "td.toks")
    assert browser.title == "unicode ✓ <U+202E>view"
    browser.save_screenshot(str(tmp_path / "unicode_view.png"))
    assert os.path.getsize(tmp_path / "unicode_view.png") > 0


@pytest.mark.slow
def test_neuron_site_shows_every_character(browser, tiny, unicode_scan, tmp_path):
    index = ml.neuroscope.site(unicode_scan, tiny, tmp_path / "site", layers=[0], neurons=[0, 1], k=len(TEXTS),
                               n_random=0)
    _open(browser, index + "#L0/N0")  # the viewer draws the page, then each full text unfolds from its data file
    deadline = time.time() + 60
    while time.time() < deadline and not browser.execute_script("return document.querySelectorAll('.snip').length"):
        time.sleep(0.1)
    browser.execute_script("document.querySelectorAll('details').forEach(function (d) { d.open = true; })")
    while time.time() < deadline and browser.execute_script(
            "return document.querySelectorAll('.full:empty').length"):
        time.sleep(0.1)
    _check_page(browser, ".snip")
    browser.execute_script("document.querySelector('div.snip').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "unicode_neuron_page.png"))
