"""The dashboard in a real browser (Debian's Chromium, driven by Playwright): log in, see live values
change, send an operator command and see it acknowledged and applied."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest
import trio

from sitegate.model import Event, Severity
from tests.api.support import api_site

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


def _need_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (make test installs it as root: "
                    "apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright (python) is not installed: pip install -e '.[test]'")


@contextlib.contextmanager
def chromium_page() -> Iterator:
    """A page of a headless Chromium with a profile of its own, removed afterwards."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="sitegate-chromium-")
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), args=ARGS,
                                                        headless=True)
            try:
                yield ctx.pages[0] if ctx.pages else ctx.new_page()
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _drive(url: str, token: str, shots: Path, emit: Callable[[Event], None]) -> dict:
    from playwright.sync_api import expect

    out: dict = {}
    with chromium_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url)
        page.get_by_test_id("token").fill(token)
        page.get_by_test_id("login-button").click()
        expect(page.get_by_test_id("status")).to_have_text("connected as operator", timeout=15_000)
        expect(page.locator('tr[data-entry="sim"] [data-testid="entry-state"]')).to_have_text("loaded")
        expect(page.locator('tr[data-device="sim.dev0"] [data-testid="device-online"]')).to_contain_text(
            "online", timeout=15_000)
        # Live values: the same cell shows different values over time.
        cell = page.locator('tr[data-key="sim.dev0/temperature"] [data-testid="value"]')
        expect(cell).not_to_be_empty(timeout=15_000)
        first = cell.inner_text()
        page.wait_for_function(
            "([sel, v]) => { const c = document.querySelector(sel); return c && c.textContent !== v; }",
            arg=['tr[data-key="sim.dev0/temperature"] [data-testid="value"]', first], timeout=15_000)
        out["first"], out["later"] = first, cell.inner_text()
        assert page.locator('tr[data-key="sim.dev0/temperature"] svg.spark polyline').count() == 1
        # An operator command round-trips: acknowledged, then seen in the live readings.
        page.get_by_test_id("cmd-device").select_option("sim.dev0")
        expect(page.locator('[data-testid="cmd-point"] option[value="temperature"]')).to_have_count(1)
        page.get_by_test_id("cmd-point").select_option("temperature")
        page.get_by_test_id("cmd-value").fill("123.5")
        page.get_by_test_id("cmd-send").click()
        expect(page.get_by_test_id("cmd-result")).to_have_text("ack: sim.dev0/temperature = 123.50",
                                                               timeout=15_000)
        expect(cell).to_have_text("123.50", timeout=15_000)
        # Sink connectivity, alarms and rollout progress come from site events.
        emit(Event("sink.state", "uplink", data={"sink": "uplink", "from": "online", "state": "offline",
                                                "reason": "connection refused"}))
        emit(Event("alert", "route0", "sim.dev1", "temperature", Severity.CRITICAL, "too hot",
                   data={"level": "critical"}))
        emit(Event("rollout.progress", "core", message="wave 1",
                   data={"rollout": "fw-2.1", "state": "running", "done": 3, "total": 10, "wave": 1}))
        expect(page.locator('tr[data-sink="uplink"]')).to_contain_text("offline", timeout=15_000)
        expect(page.locator('tr[data-device="sim.dev1"]')).to_contain_text("temperature: critical",
                                                                           timeout=15_000)
        expect(page.locator('[data-rollout="fw-2.1"]')).to_contain_text("3/10", timeout=15_000)
        page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
        out["errors"] = errors
    return out


async def test_dashboard_logs_in_shows_live_values_and_round_trips_an_operator_command(tmp_path):
    _need_browser()
    async with api_site(tmp_path, interval=0.1) as (host, server, tokens):
        token, _ = tokens.create("operator", "browser")
        page = await trio.to_thread.run_sync(lambda: urllib.request.urlopen(server.url, timeout=10).read())
        assert b"sitegate" in page and b"app.js" in page
        def emit(event: Event) -> None:      # from the browser's thread onto the site's, as an entry would
            trio.from_thread.run_sync(host.events.emit, event)

        out = await trio.to_thread.run_sync(_drive, server.url, token, tmp_path, emit)
        assert out["first"] != out["later"]
        assert out["errors"] == []
        assert server.counters["deflate_connections"] >= 1     # Chromium negotiated permessage-deflate
        audit = host.services["twins"].audit_log()
        assert (audit[0]["who"], audit[0]["action"], audit[0]["status"], audit[0]["value"]) == \
            ("browser", "write", "ack", "123.5")
