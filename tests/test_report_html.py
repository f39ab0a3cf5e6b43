"""report.html in a real headless browser (issue 14.4): the HTML report of a failing mutant
renders the timeline of its failing case, with the failing step labelled and highlighted.

Chromium and its driver come from Debian's packages (`apt-get install chromium
chromium-driver`, as .ci/run does), driven through selenium. Without them the test is
skipped, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths; skip (fail under CI=true) when either is missing."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None:
        missing.append("chromium")
    if driver is None:
        missing.append("chromedriver (Debian's chromium-driver)")
    if missing:
        why = "no headless browser: " + ", ".join(missing) + " not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(why + " (CI=true: .ci/run installs chromium and chromium-driver)")
        pytest.skip(why)
    assert chromium is not None and driver is not None
    return chromium, driver


@pytest.fixture(scope="module")
def failing_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The report of a mutant whose skip answers effective = snap (CS-006)."""
    out = tmp_path_factory.mktemp("mutant-report")
    assert main(["run", "--impl", "mutant:effective-snap-on-skip", "-k", "cs-skip",
                 "--out", str(out)]) == 1
    return out, json.loads((out / "report.json").read_text(encoding="utf-8"))


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium, driver_path = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(30)
        yield driver
    finally:
        driver.quit()


def test_the_page_is_one_file_that_fetches_nothing(
        failing_report: tuple[Path, dict[str, Any]]) -> None:
    page = (failing_report[0] / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for fetching in ("<script", "<link", " src=", "url(", "@import"):
        assert fetching not in page, fetching
    # the only URL is the SVG namespace, an identifier that is never fetched
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}


def test_a_browser_renders_the_timeline_of_the_failing_case(
        failing_report: tuple[Path, dict[str, Any]], browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    out, data = failing_report
    case = next(c for c in data["cases"] if c["status"] == "failed" and c["trace"])
    step = case["failure"]["step"]
    label = f"step {step['index'] + 1} ({step['kind']})"
    browser.get((out / "report.html").resolve().as_uri())
    section = browser.find_element(By.ID, f"case-{case['id']}")
    browser.execute_script("arguments[0].scrollIntoView()", section)
    svg = section.find_element(By.CSS_SELECTOR, "svg.timeline")
    assert svg.is_displayed()
    assert svg.size["width"] > 300 and svg.size["height"] > 200, svg.size
    highlighted = svg.find_element(By.CSS_SELECTOR, "g.failing-step")
    assert highlighted.is_displayed() and highlighted.get_attribute("data-step") == label
    box = browser.execute_script("const b = arguments[0].getBBox(); return [b.width, b.height]",
                                 highlighted)
    assert box[0] > 20 and box[1] > 100, box  # the red band over the whole failing column
    assert f"{label} failed" in svg.get_attribute("textContent")
    # one line per series the node reported, drawn with a length
    for series in ("applied", "meta", "pointer", "effective"):
        group = svg.find_element(By.CSS_SELECTOR, f"g.series-{series}")
        length = browser.execute_script(
            "return [...arguments[0].querySelectorAll('path, line')]"
            ".reduce((n, e) => n + e.getTotalLength(), 0)", group)
        assert length > 0, series
    shot = tmp_path / "timeline.png"
    assert svg.screenshot(str(shot))
    page = tmp_path / "report.png"
    assert browser.save_screenshot(str(page))
    for png in (shot, page):
        data_bytes = png.read_bytes()
        assert data_bytes.startswith(PNG_MAGIC) and len(data_bytes) > 5_000, png
