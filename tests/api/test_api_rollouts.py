"""Rollouts through the WebSocket API: status for viewers; start, pause, resume, abort for admins."""

from sitegate.testing import api_client, running_site

SITE = """
site: t
entries:
  - {id: sim, domain: simulator}
"""


async def test_rollout_status_lists_none_and_unknown_ids_are_not_found(tmp_path):
    async with running_site(tmp_path, SITE) as host:
        async with api_client(host, role="viewer") as ws:
            listed = await ws.call("rollout_status")
            assert listed["success"] and listed["result"] == []
            one = await ws.call("rollout_status", rollout_id="nope")
            assert not one["success"] and one["error"]["code"] == "not_found"


async def test_only_admins_change_rollouts_and_bad_requests_say_why(tmp_path):
    async with running_site(tmp_path, SITE) as host:
        async with api_client(host, role="operator") as ws:
            refused = await ws.call("rollout_pause", rollout_id="fw")
            assert not refused["success"] and refused["error"]["code"] == "unauthorized"
        async with api_client(host, role="admin") as ws:
            missing = await ws.call("rollout_pause", rollout_id="fw")
            assert missing["error"]["code"] == "not_found" and "no rollout 'fw'" in missing["error"]["message"]
            no_entry = await ws.call("rollout_start", entry_id="ghost", target="plugins/x/update-a-1.bin")
            assert no_entry["error"]["code"] == "not_found" and "ghost" in no_entry["error"]["message"]
            # This site loads plugins from a dev folder: no signed registry to fetch an update from.
            dev = await ws.call("rollout_start", entry_id="sim", target="plugins/x/update-a-1.bin")
            assert dev["error"]["code"] == "not_allowed" and "signed registry" in dev["error"]["message"]
