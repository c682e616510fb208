"""Headless Chromium for the `tadkit view` tests (selenium + Debian's chromium / chromium-driver).

Skips with a reason when the browser, its driver or selenium is missing. Started with a fresh
profile and every background service off, so the only requests are the page's own (checked).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000")


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths, or skip naming what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("needs selenium (pip install -e '.[test]')")
    browser = os.environ.get("TADKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("TADKIT_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("needs headless Chromium: apt-get install -y chromium chromium-driver (.ci/run does)")
    return browser, driver


class Browser:
    """One headless Chromium; ``open(path)`` loads a page and waits until its script has run."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must never download a driver
        browser, driver = find_browser()
        self.profile = tempfile.mkdtemp(prefix="tadkit-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in CHROMIUM_FLAGS + (f"--user-data-dir={self.profile}",):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(driver), options=options)

    def open(self, path: Path, timeout: float = 30.0) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver.get(Path(path).resolve().as_uri())
        WebDriverWait(self.driver, timeout).until(
            lambda d: d.execute_script("return document.body && document.body.getAttribute('data-ready')") == "1")

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def errors(self) -> list[str]:
        """Console messages of level SEVERE since the last call (script errors, CSP violations)."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def requests(self) -> list[tuple[str, str]]:
        """(document URL, requested URL) of every request since the last call (DevTools Network
        events; the browser's own new-tab page included, its document URL says so)."""
        out = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                params = message["params"]
                out.append((params.get("documentURL", ""), params["request"]["url"]))
        return out

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)
