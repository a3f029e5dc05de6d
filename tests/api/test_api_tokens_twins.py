"""`sitegate token` from the command line, and twins that outlive a restart."""

from __future__ import annotations

import subprocess
import sys

import trio

from sitegate.api import start_twins
from sitegate.api.tokens import TokenStore
from sitegate.testing import running_site, wait_for, write_site


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sitegate.cli", "token", *args], capture_output=True, text=True,
                          timeout=60)


def test_token_create_list_revoke_from_the_command_line(tmp_path):
    site = write_site(tmp_path, "site: t\nentries: []\n")
    out = _cli("create", str(site), "--role", "operator", "--name", "night-shift")
    assert out.returncode == 0, out.stderr
    token = out.stdout.splitlines()[0]
    assert token.startswith("sg_")
    store = TokenStore(tmp_path / ".sitegate")
    info = store.check(token)
    assert (info.name, info.role) == ("night-shift", "operator")
    assert token.split("_", 2)[2] not in (tmp_path / ".sitegate" / "api_tokens.db").read_bytes().decode("latin-1")
    listed = _cli("list", str(site)).stdout
    assert "night-shift" in listed and "operator" in listed and token not in listed
    assert _cli("revoke", str(site), "night-shift").returncode == 0
    assert store.check(token) is None
    again = _cli("revoke", str(site), "night-shift")
    assert again.returncode == 1 and "no active token" in again.stdout
    bad = _cli("create", str(site), "--role", "root")
    assert bad.returncode == 2 and "invalid choice: 'root'" in bad.stderr


async def test_twins_outlive_a_restart_and_show_devices_not_heard_from_as_offline(tmp_path):
    first = """
    site: t
    entries:
      - {id: sim, domain: simulator, config: {devices: 1, interval: 0.02}}
    """
    async with running_site(tmp_path, first, services=False) as host:
        async with trio.open_nursery() as nursery:
            twins = await start_twins(host, nursery)
            await wait_for(lambda: twins.twins.get("sim.dev0") and twins.twins["sim.dev0"].online,
                           what="sim.dev0 online")
            twins.set_desired("sim.dev0", "v2")
            nursery.cancel_scope.cancel()       # flushes to SQLite on the way out
    second = first.replace("{id: sim,", "{id: sim, disabled: true,")
    async with running_site(tmp_path, second, services=False) as host:
        async with trio.open_nursery() as nursery:
            twins = await start_twins(host, nursery)
            twins.tick, twins.min_offline_after = 0.05, 0.2
            events = host.events.subscribe("device.*")
            dev = twins.twins["sim.dev0"]
            assert (dev.fw_version, dev.desired_config) == ("1.0.0", "v2")
            with trio.fail_after(10):
                event = await events.receive.receive()
            assert (event.kind, event.device) == ("device.offline", "sim.dev0")
            assert twins.list()[0]["online"] is False and twins.list()[0]["drift"] is True
            nursery.cancel_scope.cancel()
