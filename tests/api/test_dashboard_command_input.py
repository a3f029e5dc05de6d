"""The dashboard's command form in a real browser: a value the point cannot hold is refused in the page,
saying what and for which point, and nothing reaches the device (the audit log has only the good write)."""

from __future__ import annotations

import pytest
import trio

from tests.api.support import api_site
from tests.api.test_dashboard_browser import _need_browser, chromium_page

pytestmark = pytest.mark.browser


def _try_values(url: str, token: str) -> dict[str, str]:
    from playwright.sync_api import expect

    said: dict[str, str] = {}
    with chromium_page() as page:
        page.goto(f"{url}#token={token}")
        expect(page.get_by_test_id("status")).to_have_text("connected as operator", timeout=15_000)
        page.get_by_test_id("cmd-device").select_option("sim.dev0")
        expect(page.locator('[data-testid="cmd-point"] option[value="temperature"]')).to_have_count(1)
        page.get_by_test_id("cmd-point").select_option("temperature")
        result = page.get_by_test_id("cmd-result")
        for typed in ("", "warm", "21.5"):
            page.get_by_test_id("cmd-value").fill(typed)
            page.get_by_test_id("cmd-send").click()
            if typed == "21.5":
                expect(result).to_have_text("ack: sim.dev0/temperature = 21.50", timeout=15_000)
            else:
                expect(result).to_have_class("error", timeout=5_000)
            said[typed] = result.inner_text()
            page.evaluate("document.getElementById('cmd-result').className = ''")
    return said


async def test_the_command_form_refuses_an_empty_or_non_numeric_value_for_a_number_point(tmp_path):
    _need_browser()
    async with api_site(tmp_path, interval=0.1) as (host, server, tokens):
        token, _ = tokens.create("operator", "browser")
        said = await trio.to_thread.run_sync(_try_values, server.url, token)
        assert said[""] == "value: type the value to write to temperature"
        assert said["warm"] == 'value: temperature holds a number (float), got "warm"'
        audit = host.services["twins"].audit_log()
        assert [(a["action"], a["value"], a["status"]) for a in audit] == [("write", "21.5", "ack")], audit
