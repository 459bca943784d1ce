"""Headless Chromium through selenium for the page tests: one way to start it, skipping with a clear message where
no browser can run (CI installs Debian's chromium and chromium-driver)."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


def start_chromium(profile_dir, *, width: int, height: int = 1000, console_log: bool = False):
    """A headless Chromium driver (the caller quits it), or ``pytest.skip`` where none can start."""
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium): no browser test")
    if not CHROMIUM or not DRIVER:
        pytest.skip("no chromium / chromedriver on PATH (Debian: apt-get install chromium chromium-driver): "
                    "no browser test")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--allow-file-access-from-files", f"--window-size={width},{height}",
                f"--user-data-dir={profile_dir}"):
        opts.add_argument(arg)
    if console_log:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    except Exception as e:  # noqa: BLE001 - any start-up failure means: this machine cannot run a browser
        pytest.skip(f"chromium did not start ({type(e).__name__}: {str(e).splitlines()[0][:200]}): no browser test")
    driver.set_page_load_timeout(120)
    return driver
