"""The paste-a-claim page and the offline API docs in a real browser (Chromium via Playwright).

Needs Playwright for Python and Debian's chromium (`apt-get install -y chromium`; never
`playwright install`); without them the test is skipped with the reason. The server is the
real uvicorn on 127.0.0.1 with an ephemeral port. Screenshots are kept as test artefacts in
build/test-artifacts/ (git-ignored), for a person to look at.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
import httpx
import uvicorn

from engine.service.app import create_app
from engine.service.config import ServiceConfig

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "build" / "test-artifacts"
READY_SECONDS = 180


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(ServiceConfig(workers=1)), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/v1/health", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    else:
        pytest.fail("the service did not become ready")
    yield base
    srv.should_exit = True
    thread.join(timeout=30)
    sock.close()


def watch(page) -> list[str]:
    """Collect console errors, page errors and failed requests (the page must load nothing remote)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} {r.failure}"))
    page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    return errors


def test_paste_a_claim_and_read_why(server: str, browser) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    errors = watch(page)
    page.goto(f"{server}/")
    assert page.title().startswith("PolicyKB")

    # paste: office visit, E/M without modifier 25 -> the E/M line denies under NCCI PTP
    page.get_by_label("Paste a claim").fill((ROOT / "examples" / "office-96372-with-em.json").read_text())
    page.get_by_role("button", name="Check claim").click()
    page.locator("article.line").first.wait_for(timeout=60_000)
    cards = page.locator("article.line")
    assert cards.count() == 3
    assert [cards.nth(i).locator(".decision").inner_text().lower() for i in range(3)] == ["pay", "deny", "pay"]
    primary = cards.nth(1).locator(".primary")
    assert "ncci.ptp" in primary.inner_text() and "CO-236" in primary.inner_text()
    reference = httpx.get(f"{server}/ui/config").json()["reference"]  # the built site, when there is one
    expected_href = f"{reference}rules/ncci.ptp.html" if reference else "/v1/rules/ncci.ptp"
    assert primary.locator("a.rule").first.get_attribute("href") == expected_href
    assert "add modifier 25 to line 2" in cards.nth(1).inner_text()  # the remedy
    proof = cards.nth(1).locator("details.proof").first
    proof.locator("summary").first.click()
    assert proof.locator("ul li").first.is_visible()
    page.screenshot(path=str(ARTIFACTS / "service-page.png"), full_page=False)

    # pick a bundled example: facility POS 22, the injection denies and the E/M is paid
    page.get_by_label("Bundled example").select_option("facility-96372-pos22.json")
    page.wait_for_function("document.getElementById('claim').value.includes('EX-FACILITY-22')")
    page.get_by_role("button", name="Check claim").click()
    page.wait_for_function("document.querySelector('.claim-head strong')?.textContent === 'EX-FACILITY-22'")
    decisions = [c.lower() for c in page.locator("article.line .decision").all_inner_texts()]
    assert decisions == ["deny", "pay", "pay"]
    answer = httpx.post(
        f"{server}/v1/adjudicate",
        content=(ROOT / "examples" / "facility-96372-pos22.json").read_bytes(),
        headers={"Content-Type": "application/json"},
    ).json()
    line = answer["lines"][0]
    shown = page.locator("article.line").first.locator(".primary").inner_text()
    expected = line.get("primary") or next(
        r for r in line["reasons"] if r["severity"] == "deny" and not r.get("overridden_by")
    )
    rule = expected if isinstance(expected, str) else expected["rule"]
    reason = next(r for r in line["reasons"] if r["rule"] == rule)
    assert rule in shown and f"{reason['group']}-{reason['carc']}" in shown
    assert "set aside by" in page.locator("article.line").nth(1).inner_text()  # NCCI edit overridden by policy

    assert not errors, errors

    # the answer survives following a link and coming back
    page.goto(f"{server}/v1/health")
    page.go_back()
    page.locator("article.line").first.wait_for(timeout=30_000)
    assert page.locator("article.line").count() == 3

    # a claim with a problem: the page shows the field path, as the CLI does
    broken = json.loads((ROOT / "examples" / "office-96372-with-em.json").read_text())
    del broken["lines"][0]["code"]
    page.get_by_label("Paste a claim").fill(json.dumps(broken))
    page.get_by_role("button", name="Check claim").click()
    page.locator("#error:not([hidden])").wait_for(timeout=30_000)
    assert "lines[0].code" in page.locator("#error").inner_text()
    assert errors and all("422" in e for e in errors), errors  # only the refused claim itself


def test_page_is_readable_at_200_percent_zoom(server: str, browser) -> None:
    """A 1366-pixel laptop screen at 200% zoom: 683 CSS pixels wide, nothing cut off sideways."""
    page = browser.new_page(viewport={"width": 683, "height": 450}, device_scale_factor=2)
    errors = watch(page)
    page.goto(f"{server}/")
    page.get_by_label("Bundled example").select_option("office-96372-with-em.json")
    page.wait_for_function("document.getElementById('claim').value.includes('EX-OFFICE-EM')")
    page.get_by_role("button", name="Check claim").click()
    page.locator("article.line").first.wait_for(timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(ARTIFACTS / "service-page-zoom200.png"), full_page=True)
    assert not errors, errors


def test_api_docs_work_offline(server: str, browser) -> None:
    page = browser.new_page()
    errors = watch(page)
    page.goto(f"{server}/docs")
    page.locator(".swagger-ui .info .title").wait_for(timeout=30_000)
    assert "PolicyKB" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock-summary-path", has_text="/v1/adjudicate").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "service-docs.png"))
    assert not errors, errors
