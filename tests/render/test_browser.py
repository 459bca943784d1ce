"""The demo's pages in a real browser (headless Chromium through selenium): every plotly figure renders, no console
errors, nothing is fetched from the network, and at a phone's 420 px as at 1,400 px nothing scrolls sideways and
every figure fits. (The Neuroscope site's viewer has its own browser test, test_site_viewer.py.)

Skips with a clear message where no browser can run (CI installs Debian's chromium and chromium-driver)."""

from __future__ import annotations

import os
import time

import pytest

from render.browser import start_chromium

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), width=1280, console_log=True)
    yield driver
    driver.quit()


def _open(driver, path: str) -> list[dict]:
    """Load a page from file://; returns the console messages it produced."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get("file://" + os.path.abspath(path))
    deadline = time.time() + 60
    while time.time() < deadline and driver.execute_script("return document.readyState") != "complete":
        time.sleep(0.1)
    return driver.get_log("browser")


def _errors(logs: list[dict]) -> list[str]:
    return [m["message"] for m in logs if m.get("level") == "SEVERE"]


def _wait_for_figures(driver) -> dict:
    """Wait until every plotly figure of the page has drawn; returns counts and each figure's box vs plot."""
    script = """
      var divs = Array.prototype.slice.call(document.querySelectorAll('.plotly-graph-div'));
      return {n: divs.length,
              drawn: divs.filter(function(d){return d._fullLayout && d.querySelector('.main-svg');}).length,
              plotly: typeof window.Plotly,
              gaps: divs.map(function(d){var svg=d.querySelector('.main-svg');
                 return svg ? d.getBoundingClientRect().height - svg.getBoundingClientRect().height : null;})};
    """
    deadline = time.time() + 90
    state = driver.execute_script(script)
    while time.time() < deadline and state["drawn"] < state["n"]:
        time.sleep(0.25)
        state = driver.execute_script(script)
    return state


def _network_requests(driver) -> list[str]:
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(function(e){return e.name;})"
        ".filter(function(u){return !u.startsWith('file:') && !u.startsWith('data:') && !u.startsWith('blob:');});")


@pytest.mark.parametrize("page", ["index.html", os.path.join("mri", "index.html"),
                                  os.path.join("hidden_mri", "index.html"), "neuroscope_view.html"])
def test_demo_pages_render_every_figure(browser, small_demo, page):
    path = os.path.join(small_demo["out"], page)
    logs = _open(browser, path)
    state = _wait_for_figures(browser)
    assert state["n"] >= 1 and state["drawn"] == state["n"], state
    assert state["plotly"] == "object"
    # each figure's box is as tall as its plot: no blank gap below a figure
    assert all(g is not None and abs(g) <= 2 for g in state["gaps"]), state["gaps"]
    assert _errors(logs + browser.get_log("browser")) == []
    assert _network_requests(browser) == []


def test_demo_pages_share_one_plotly_asset_and_stay_small(small_demo):
    out = small_demo["out"]
    assets = [f for f in os.listdir(os.path.join(out, "assets")) if f.startswith("plotly")]
    assert len(assets) == 1
    for page in ("index.html", os.path.join("mri", "index.html"), "neuroscope_view.html"):
        assert os.path.getsize(os.path.join(out, page)) < 2 * 1024 * 1024, page
        text = open(os.path.join(out, page), encoding="utf-8").read()
        assert f"assets/{assets[0]}" in text and text.count("Plotly.newPlot") >= 1


# ---------------------------------------------------------------------------------------------- narrow screens
@pytest.fixture(scope="module")
def sized_browser(tmp_path_factory):
    """A second browser whose viewport is set exactly per test (a headless window has a minimum width, above a
    phone's)."""
    driver = start_chromium(tmp_path_factory.mktemp("chromium-sized"), width=1400)
    yield driver
    driver.quit()


_LAYOUT = """
  var iw = window.innerWidth, out = {iw: iw, sw: document.documentElement.scrollWidth, figures: [], cut: []};
  document.querySelectorAll('.plotly-graph-div').forEach(function(d, i){
    var box = d.getBoundingClientRect(), svg = d.querySelector('.main-svg');
    var s = svg ? svg.getBoundingClientRect() : null;
    out.figures.push([i, Math.round(box.left), Math.round(box.right), s ? Math.round(s.width) : null]);
    if (!s) return;
    d.querySelectorAll('.g-gtitle text, .annotation text').forEach(function(t){  // titles, subplot titles
      var b = t.getBoundingClientRect();
      if (b.width > 0 && (b.left < s.left - 1 || b.right > s.right + 1)) out.cut.push([i, t.textContent]);
    });
  });
  return out;
"""


def _layout_ok(state) -> bool:
    return (state["sw"] <= state["iw"] and not state["cut"] and all(
        left >= 0 and right <= state["iw"] and svg is not None and svg <= right - left + 1
        for _, left, right, svg in state["figures"]))


@pytest.mark.parametrize("width", [420, 1400])
@pytest.mark.parametrize("page", ["index.html", os.path.join("mri", "index.html"),
                                  os.path.join("hidden_mri", "index.html"), "neuroscope_view.html"])
def test_demo_pages_fit_the_screen(sized_browser, small_demo, page, width):
    """At a phone's 420 px and a desktop's 1,400 px: the page never scrolls sideways (wide tables scroll inside their
    own box), every plotly figure fits the page and its plot fits its box, and no figure title is cut."""
    sized_browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                  {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    _open(sized_browser, os.path.join(small_demo["out"], page))
    assert _wait_for_figures(sized_browser)["n"] >= 1
    deadline = time.time() + 20  # the figures redraw at their final width (and wrap long titles) after load
    state = sized_browser.execute_script(_LAYOUT)
    while time.time() < deadline and not _layout_ok(state):
        time.sleep(0.25)
        state = sized_browser.execute_script(_LAYOUT)
    assert state["iw"] == width
    assert state["sw"] <= state["iw"], state
    assert state["figures"] and _layout_ok(state), state


def test_n2g_titles_are_drawn_whole(browser, small_demo):
    """Every N2G graph's SVG holds its texts (a one-column graph is narrower than its title otherwise)."""
    _open(browser, os.path.join(small_demo["out"], "n2g", "index.html"))
    cut = browser.execute_script("""
      var out = [];
      document.querySelectorAll('svg.n2g').forEach(function(svg){
        var s = svg.getBoundingClientRect();
        svg.querySelectorAll(':scope > text').forEach(function(t){var b = t.getBoundingClientRect();
          if (b.right > s.right + 0.5) out.push([t.textContent, Math.round(b.right - s.left), Math.round(s.width)]);});
      });
      return [document.querySelectorAll('svg.n2g').length, out];""")
    assert cut[0] >= 1 and cut[1] == [], cut
