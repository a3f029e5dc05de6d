import trio
from sitegate.testing import running_site, wait_for
from tests.dataplane.dp_helpers import sink_lines, acked, FIXTURES

async def test_smoke(tmp_path):
    site = f"""
site: t
entries:
  - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 50}}}}
  - {{id: out, domain: filesink, config: {{path: {tmp_path}/out}}}}
routes:
  - {{from: ["src.*/*"], to: [out]}}
"""
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        await wait_for(lambda: len(sink_lines(tmp_path/"out")) >= 200, 10, what="200 lines")
        print(host.services["dataplane"].describe())
    got = {(l["device"], l["seq"]) for l in sink_lines(tmp_path/"out")}
    assert acked(tmp_path/"ack") <= got
