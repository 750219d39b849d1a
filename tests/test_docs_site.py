"""The reference site as HTML: `mkdocs build --strict` passes, and it works in a real browser.

The browser test needs Playwright for Python and Debian's chromium (`apt-get install -y
chromium`; never `playwright install`); without them it is skipped with the reason.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs and mkdocs-material are not installed")
    out = tmp_path_factory.mktemp("html")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          check=False, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_mkdocs_build_strict_passes_and_ships_every_asset_locally(html) -> None:
    assert (html / "index.html").is_file() and (html / "codes" / "96372.html").is_file()
    assert (html / "assets" / "pkb.js").is_file() and (html / "assets" / "lookup" / "9.json").is_file()
    page = (html / "rules" / "inj.facility_em.html").read_text()
    assert "fonts.googleapis.com" not in page and "cdn.jsdelivr" not in page and "unpkg.com" not in page


@pytest.fixture(scope="module")
def server(html):
    handler = functools.partial(_QuietHandler, directory=str(html))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_site_works_in_a_browser(server, browser) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    # a request cut short by moving to the next page is not a failure of the site
    page.on("requestfailed", lambda r: None if "ERR_ABORTED" in (r.failure or "")
            else errors.append(f"request failed: {r.url} {r.failure}"))

    page.goto(f"{server}/index.html")
    assert "PolicyKB reference" in page.title()

    page.goto(f"{server}/codes/96372.html")
    assert page.locator("h1").first.inner_text().startswith("96372")
    table = page.locator("table.pkb-ptp").first
    first = table.locator("tbody tr td").first
    table.locator("th", has_text="Partner").click()
    ascending = first.inner_text()
    table.locator("th", has_text="Partner").click()
    assert table.locator("tbody tr td").first.inner_text() >= ascending

    page.goto(f"{server}/rules/inj.facility_em.html")
    svg = page.locator("svg.pkb-graph").first
    box = svg.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 50
    assert svg.locator("g.pkb-node").count() >= 5
    proof = page.locator(".pkb-proof details").first
    assert proof.is_visible()
    assert "inj.facility_em" in page.locator(".pkb-proof").first.inner_text()

    page.goto(f"{server}/index.html")
    page.locator("label.md-search__icon, .md-search__input").first.click()
    page.locator("input.md-search__input").fill("96372")
    hit = page.locator(".md-search-result__item a[href*='codes/96372.html']").first
    hit.wait_for(timeout=20_000)
    hit.click()
    page.wait_for_url("**/codes/96372.html*")

    page.goto(f"{server}/codes/lookup.html#20610")
    page.locator("#pkb-lookup-result h2").wait_for(timeout=10_000)
    assert page.locator("#pkb-lookup-result h2").inner_text().startswith("20610")

    noise = [e for e in errors if "favicon" not in e]
    assert not noise, noise
