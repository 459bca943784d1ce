"""The README's screenshots (docs/img/*.png), taken from the pages the demo writes, in headless Chromium.

Usage::

    mri-lens demo --out /tmp/demo
    python scripts/readme_screenshots.py /tmp/demo [--img docs/img] [--neuron L0/N77]

Needs selenium (the ``dev`` extra) and Chromium with its driver (Debian: ``chromium`` and ``chromium-driver``).
Each shot is one vertical slice of one page, from a start element to an end element, at the page width the shot
names (a neuron page at 1,400 and at 420 CSS pixels); when ``pngquant`` is on the PATH the PNGs are quantised to
keep them small. The neuron pages are those of the tiny-LM site (``site/index.html#L{layer}/N{neuron}``): by
default the first neuron with an N2G graph, so its explanation is at the top.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import subprocess
import tempfile
import time

# name -> (page under the demo directory, start, end, width, scale): start/end are "tag~text" (the first such
# element containing text), "css::n" (the n-th match) or a number of pixels (start) / a height (end). A page of
# the tiny-LM site's viewer is "site/index.html#{neuron}" (the neuron filled in).
SHOTS = {
    "neuron_page_1400": ("site/index.html#{neuron}", 0, "h2~Direct logit effects", 1400, 0.75),
    "neuron_page_420": ("site/index.html#{neuron}", 0, "h2~Similar neurons", 420, 1),
    "n2g": ("site/index.html#{neuron}", "section.n2g", "h2~Statistics", 1200, 0.75),
    "site_index": ("site/index.html", 0, 900, 1200, 0.75),
    "mri_page": ("mri/index.html", 0, "h2~Layer", 1400, 0.75),
    "mri_neurons": ("mri/index.html", "h3~Neurons of the most enriched regions", "h2~How much the map keeps", 1400,
                    0.75),
    "mri_graph": ("mri/index.html", "h2~Co-activation graph", "h3~Graph metrics", 1200, 0.75),
    "mri_regions": ("mri/index.html", "h2~Region images", "h2~Layer", 1200, 0.75),
    "mri_components": ("hidden_mri/index.html", 0, "h3~positive", 1400, 0.75),
    "scan_top_examples": ("index.html", "h3~Top examples", "h4::1", 1200, 0.75),
    "report": ("index.html", "h2~Category differences", "h3~Top examples", 1200, 0.75),
    "neuroscope_view": ("neuroscope_view.html", ".nsv > p", "td.nid::7", 1200, 0.75),
}

_BOUNDS = """
function top(sel) {
  if (typeof sel === 'number') return sel;
  var m = sel.match(/^(.*)::(\\d+)$/), i = 0;
  if (m) { sel = m[1]; i = +m[2]; }
  var parts = sel.split('~'), els = [].slice.call(document.querySelectorAll(parts[0]));
  if (parts.length > 1) els = els.filter(function (e) { return e.textContent.indexOf(parts[1]) >= 0; });
  return els[i].getBoundingClientRect().top + window.scrollY;
}
var a = top(arguments[0]), b = arguments[1];
return [a, typeof b === 'number' ? a + b : top(b), document.documentElement.scrollWidth];
"""

# ready when every plotly figure has drawn and, on the site's viewer, the page (index or neuron) is drawn
_READY = """
var d = [].slice.call(document.querySelectorAll('.plotly-graph-div'));
var drawn = d.filter(function (x) { return x._fullLayout && x.querySelector('.main-svg'); });
var app = document.getElementById('app');
var viewer = !app || (location.hash ? !!app.querySelector('h1') && !/loading/.test(app.textContent.slice(0, 200))
                                    : !!app.querySelector('table'));
return [document.readyState, d.length, drawn.length, viewer];
"""


def browser():
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                "--allow-file-access-from-files", "--hide-scrollbars", "--window-size=1400,1000",
                f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        opts.add_argument(arg)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "chromedriver")
    return webdriver.Chrome(options=opts, service=service)


def default_neuron(demo: str) -> str:
    """The first neuron of the demo's N2G page (it has an explanation on its site page), as ``L0/N77``."""
    base = os.path.join(demo, "n2g")
    for layer in sorted(os.listdir(base)):
        if re.fullmatch(r"L\d+", layer):
            ids = sorted(int(f[1:-5]) for f in os.listdir(os.path.join(base, layer)) if re.fullmatch(r"N\d+\.json", f))
            if ids:
                return f"{layer}/N{ids[0]}"
    raise SystemExit(f"no N2G graph under {base}: pass --neuron L<layer>/N<neuron>")


def shoot(driver, url: str, out: str, start, end, width: int, scale: float) -> None:
    """Load ``url`` at ``width`` CSS pixels, wait for its figures (or the viewer's page), save the slice from
    ``start`` to ``end`` as a PNG at ``out`` (``scale``: CSS pixel to image pixel)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
    driver.get("about:blank")  # a fragment-only change would not reload the viewer
    driver.get(url)
    deadline = time.time() + 90
    while time.time() < deadline:
        state, n, drawn, viewer = driver.execute_script(_READY)
        if state == "complete" and drawn == n and viewer:
            break
        time.sleep(0.25)
    time.sleep(1.5)  # plotly's transitions, fonts
    y0, y1, page_width = driver.execute_script(_BOUNDS, start, end)
    y0 = max(0, y0 - 8)
    clip = {"x": 0, "y": y0, "width": min(page_width, width), "height": y1 - y0, "scale": scale}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                              "clip": clip})
    with open(out, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    if shutil.which("pngquant"):
        subprocess.run(["pngquant", "--force", "--skip-if-larger", "--quality", "60-90", "--ext", ".png", out],
                       check=False)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", help="the directory `mri-lens demo --out` wrote")
    ap.add_argument("--img", default=os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "docs", "img")))
    ap.add_argument("--neuron", help="the neuron page to show, as L<layer>/N<neuron> (default: the first N2G one)")
    ap.add_argument("--only", nargs="*", help="take only these shots")
    args = ap.parse_args(argv)
    os.makedirs(args.img, exist_ok=True)
    neuron = args.neuron or default_neuron(args.demo)
    driver = browser()
    try:
        for name, (page, start, end, width, scale) in SHOTS.items():
            if args.only and name not in args.only:
                continue
            path, _, frag = page.format(neuron=neuron).partition("#")
            url = "file://" + os.path.abspath(os.path.join(args.demo, path)) + (f"#{frag}" if frag else "")
            out = os.path.join(args.img, f"{name}.png")
            shoot(driver, url, out, start, end, width, scale)
            print(f"{out}: {os.path.getsize(out) // 1024} KB")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
