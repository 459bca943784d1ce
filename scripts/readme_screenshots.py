"""The README's screenshots (docs/img/*.png), taken from the pages the demo writes, in headless Chromium.

Usage::

    mri-lens demo --out /tmp/demo
    python scripts/readme_screenshots.py /tmp/demo [--img docs/img]

Needs selenium (the ``dev`` extra) and Chromium with its driver (Debian: ``chromium`` and ``chromium-driver``).
Each shot is one vertical slice of one page, from a start element to an end element, at most 1200 px wide; when
``pngquant`` is on the PATH the PNGs are quantised to keep them small.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import tempfile
import time

# name -> (page under the demo directory, start, end, width, trim): start/end are "tag~text" (the first such
# element containing text), "css::n" (the n-th match) or a number of pixels (start) / a height (end).
SHOTS = {
    "mri_graph": ("mri/index.html", "h2~Co-activation graph", "h3~Graph metrics", 1200, 60),
    "mri_regions": ("mri/index.html", "h2~Region images", "h2~Layer 5 in detail", 1200, 80),
    "scan_top_examples": ("index.html", "h3~Top examples", "b~L1 N", 1200, 0),
    "report": ("index.html", "h2~Category differences", "h3~Top examples", 1200, 0),
    "neuroscope_view": ("neuroscope_view.html", ".nsv > p", "td.nid::7", 1200, 0),
    "neuroscope_site": ("site/L0/N167.html", 0, "h2~Direct logit effects", 680, 0),
    "n2g": ("site/L0/N167.html", "h2~N2G graph", "h2~Top 20 examples", 1200, 10),
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

_FIGURES = """
var d = [].slice.call(document.querySelectorAll('.plotly-graph-div'));
var drawn = d.filter(function (x) { return x._fullLayout && x.querySelector('.main-svg'); });
return [document.readyState, d.length, drawn.length];
"""


def browser():
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                "--allow-file-access-from-files", "--hide-scrollbars", "--window-size=1200,1000",
                f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        opts.add_argument(arg)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "chromedriver")
    return webdriver.Chrome(options=opts, service=service)


def shoot(driver, page: str, out: str, start, end, width: int, trim: int) -> None:
    """Load ``page``, wait for its plotly figures, save the slice from ``start`` to ``end`` as a PNG at ``out``."""
    driver.get("file://" + os.path.abspath(page))
    deadline = time.time() + 90
    while time.time() < deadline:
        state, n, drawn = driver.execute_script(_FIGURES)
        if state == "complete" and drawn == n:
            break
        time.sleep(0.25)
    time.sleep(1.5)  # plotly's transitions
    y0, y1, page_width = driver.execute_script(_BOUNDS, start, end)
    y0 = max(0, y0 - 8)
    clip = {"x": 0, "y": y0, "width": min(page_width, width), "height": y1 - y0 - trim, "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                              "clip": clip})
    with open(out, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    if shutil.which("pngquant"):
        subprocess.run(["pngquant", "--force", "--skip-if-larger", "--quality", "70-95", "--ext", ".png", out],
                       check=False)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", help="the directory `mri-lens demo --out` wrote")
    ap.add_argument("--img", default=os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "docs", "img")))
    args = ap.parse_args(argv)
    os.makedirs(args.img, exist_ok=True)
    driver = browser()
    try:
        for name, (page, start, end, width, trim) in SHOTS.items():
            out = os.path.join(args.img, f"{name}.png")
            shoot(driver, os.path.join(args.demo, page), out, start, end, width, trim)
            print(f"{out}: {os.path.getsize(out) // 1024} KB")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
