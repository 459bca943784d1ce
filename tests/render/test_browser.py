"""The demo's pages in a real browser (headless Chromium through selenium): every plotly figure renders, no console
errors, nothing is fetched from the network, and the neuron site's sort, filter and search work.

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


@pytest.mark.parametrize("page", ["index.html", os.path.join("mri", "index.html"), "neuroscope_view.html"])
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


def test_site_sort_filter_and_search(browser, small_demo):
    from selenium.webdriver.common.by import By

    site = os.path.join(small_demo["out"], "site")
    assert _errors(_open(browser, os.path.join(site, "L0", "index.html"))) == []
    rows = lambda: browser.find_elements(By.CSS_SELECTOR, "tbody tr")  # noqa: E731
    col = lambda i: [float(r.find_elements(By.TAG_NAME, "td")[i].get_attribute("data-v")) for r in rows()]  # noqa
    n = len(rows())
    assert n == 12
    header = browser.find_elements(By.CSS_SELECTOR, "th.sortable")[1]  # max
    header.click()
    assert col(1) == sorted(col(1), reverse=True)
    header.click()
    assert col(1) == sorted(col(1))
    token = rows()[0].get_attribute("data-tokens").split()[0]
    box = browser.find_element(By.ID, "filter")
    box.send_keys(token)
    visible = [r for r in rows() if r.is_displayed()]
    assert 1 <= len(visible) <= n and all(token.lower() in r.get_attribute("data-tokens").lower() for r in visible)
    box.clear()
    box.send_keys("\u2603 no such token \u2603")
    assert not [r for r in rows() if r.is_displayed()]

    assert _errors(_open(browser, os.path.join(site, "index.html"))) == []
    search = browser.find_element(By.ID, "search")
    search.send_keys(token)
    results = browser.find_elements(By.CSS_SELECTOR, "#results li a")
    assert results and all(a.get_attribute("href").endswith(".html") for a in results)
    results[0].click()
    assert "Neuron" in browser.title or "neuron" in browser.page_source.lower()
    assert _errors(browser.get_log("browser")) == []
    assert _network_requests(browser) == []
