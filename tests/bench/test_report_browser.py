"""report.html in a real headless browser: it renders, every figure is drawn, links resolve.

The report is generated from the committed report fixture (a real run's
results) and opened over ``file://`` in Debian's chromium, driven by
playwright (its own browser downloads are not used).  Checked: the title and
headings render; every figure the Markdown links is present in the page as an
``<svg>`` with a non-zero rendered size; every contents link points at an
element that exists; the console shows no error or warning, and no script
error happens (the page has no scripts at all).  Without chromium or
playwright the test skips, unless ``CI`` is set: CI installs both and must
run it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from session_proxy_bench.report import write_report

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "fixtures" / "report" / "results.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require(available: bool, reason: str) -> None:
    if available:
        return
    if _under_ci():
        pytest.fail(f"{reason}, but CI is set: .ci/run installs it")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict:
    _require(Path(CHROMIUM).exists() or shutil.which("chromium") is not None,
             f"no chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "playwright is not installed (pip install playwright)")
    out = tmp_path_factory.mktemp("report")
    markdown, page_path = write_report(json.loads(RESULTS.read_text(encoding="utf-8")), out)
    messages: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            found = page.evaluate("""() => ({
                title: document.title,
                h1: [...document.querySelectorAll('h1')].map(h => h.textContent),
                h2: [...document.querySelectorAll('h2')].map(h => h.textContent),
                figures: [...document.querySelectorAll('figure')].map(f => {
                    const svg = f.querySelector('svg');
                    const box = svg ? svg.getBoundingClientRect() : null;
                    return {label: svg ? svg.getAttribute('aria-label') : null,
                            width: box ? box.width : 0, height: box ? box.height : 0,
                            shapes: svg ? svg.querySelectorAll('rect,circle,polyline,path')
                                              .length : 0};
                }),
                links: [...document.querySelectorAll('nav.contents a')]
                    .map(a => a.getAttribute('href')),
                missing: [...document.querySelectorAll('nav.contents a')]
                    .map(a => a.getAttribute('href'))
                    .filter(h => !document.getElementById(decodeURIComponent(h.slice(1)))),
            })""")
        finally:
            browser.close()
    found.update(messages=messages, errors=errors, markdown=markdown.read_text())
    return found


def test_page_renders_title_and_headings(rendered: dict) -> None:
    assert rendered["title"] == rendered["h1"][0] == \
        "Session proxy vs logical API vs direct: benchmark report"
    expected = [line[3:] for line in rendered["markdown"].splitlines() if line.startswith("## ")]
    assert [h.replace("`", "") for h in rendered["h2"]] == [h.replace("`", "") for h in expected]


def test_every_figure_is_drawn(rendered: dict) -> None:
    titles = re.findall(r"^!\[([^\]]+)\]\(chart-[^)]+\.svg\)$", rendered["markdown"], re.M)
    assert len(titles) >= 8
    assert [f["label"] for f in rendered["figures"]] == titles
    for figure in rendered["figures"]:
        assert figure["width"] > 100 and figure["height"] > 100, figure
        assert figure["shapes"] > 2, figure


def test_contents_links_resolve(rendered: dict) -> None:
    assert len(rendered["links"]) > 20
    assert rendered["missing"] == []


def test_no_console_errors_or_warnings(rendered: dict) -> None:
    assert rendered["messages"] == []
    assert rendered["errors"] == []
