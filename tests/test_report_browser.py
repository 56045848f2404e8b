"""The HTML report in a real headless browser (Chromium driven by Playwright) at 1400 and 1024
px: nothing wider than the window, the plots loaded, the recommendation before the ranking.

Opt-in (``slow``), and skipped where no browser is installed: Debian's ``chromium`` package
and the ``browser`` extra (``pip install -e '.[browser]'``); docs/development.md says how.
"""

from __future__ import annotations

import shutil

import pytest

from benchmark.report.page import build, write

from .test_report import two_settings, write_runs

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium as root in a closed network: no sandbox, no background connections (each one
# would be refused and retried).
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no Chromium: apt-get install chromium")
    pytest.importorskip("playwright", reason="pip install -e '.[browser]'")
    root = tmp_path_factory.mktemp("browser")
    many_types = {f"anomaly_type_with_a_long_name_{i}": 0.5 + i / 40 for i in range(12)}
    runs = two_settings(seeds=3)
    for r in runs:
        r.result.per_type.update(many_types)  # a per-type table as wide as a real one
    write_runs(root, runs)
    return write(build(root))["html"]


@pytest.mark.parametrize("width", [1400, 1024])
def test_the_report_fits_the_window_and_shows_its_plots(report_page, width):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(report_page.as_uri())
            page.wait_for_load_state("load")
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            images = page.evaluate(
                "[...document.images].map(i => [i.naturalWidth, i.getBoundingClientRect().right])"
            )
            assert len(images) == 2 * 5 + 1
            assert all(natural > 0 and right <= width for natural, right in images)
            headings = page.evaluate("[...document.querySelectorAll('h3')].map(h => h.textContent)")
            assert headings[:2] == ["Recommendation", "Ranking"]
            first_table = page.evaluate("document.querySelector('table').rows[0].cells.length")
            assert first_table == 9
        finally:
            browser.close()
