"""SIGKILL the gateway while it ingests from a broker, again and again: no acknowledged message is lost.

The gateway runs as `sitegate run` in its own process; a publisher keeps sending QoS 1
messages to its persistent session meanwhile. What must hold: every message published
ends up committed in the site's WAL at least once (the broker redelivers what was
received but not yet acknowledged, i.e. not yet committed, when the gateway died).
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from pathlib import Path

import pytest

from sitegate.testing.mosquitto import free_port, publish_messages
from tests.mqtt.helpers import kill_gateway, start_gateway, stop_gateway, wait_until

pytestmark = pytest.mark.mosquitto

N = 600


def _stored(wal: Path) -> set[int]:
    from sitegate.dataplane.wal import decode_body

    if not wal.exists():
        return set()
    try:
        conn = sqlite3.connect(f"file:{wal}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute("SELECT body FROM wal_records").fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return set()          # created but not yet initialised by the gateway
    out = set()
    for (body,) in rows:
        _, values, _, _, _ = decode_body(body)
        out.update(int(v) for v in values)
    return out


def _register_session(broker, client_id: str, topic_filter: str) -> None:
    """Create the gateway's persistent session at the broker before anything is published."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.connect(broker.host, broker.port, clean_start=False, properties=props)
    c.loop_start()
    c.subscribe(topic_filter, 1)
    assert done.wait(10), "could not subscribe the session"
    c.disconnect()
    c.loop_stop()


def test_sigkill_between_receipt_and_commit_loses_nothing(mosquitto, tmp_path):
    broker = mosquitto()
    state = tmp_path / "state"
    site = tmp_path / "site.yaml"
    site.write_text(f"""
site: kill
runtime: {{state_dir: {state}}}
observability: {{metrics: false}}
entries:
  - id: local
    domain: mqtt
    config:
      host: 127.0.0.1
      port: {broker.port}
      client_id: kill-test
      status: null
      reconnect_min: 0.05
      reconnect_max: 0.5
      subscribe: [{{filter: "k/+", format: json, device: "{{1}}", point: n, value: n}}]
  # Never reachable: readings are committed to the WAL and stay there for the test to read.
  - id: parked
    domain: mqtt
    config: {{host: 127.0.0.1, port: {free_port()}, status: null, connect_timeout: 0.1, reconnect_min: 5}}
routes:
  - {{from: ["local.*/*"], to: [parked]}}
""")
    wal = state / "site.sqlite"
    _register_session(broker, "kill-test", "k/+")

    rounds = 4
    chunk = N // rounds
    rng = random.Random(7)
    kills = 0
    for r in range(rounds):
        # This round's messages trickle in while the gateway starts, ingests, and is killed mid-stream.
        def publisher(lo=r * chunk):
            for i in range(lo, lo + chunk, 10):
                publish_messages(broker, [(f"k/d{j % 4}", json.dumps({"n": j})) for j in range(i, i + 10)])

        pub = threading.Thread(target=publisher, daemon=True)
        pub.start()
        proc = start_gateway(site, tmp_path / "gateway.log")
        before = len(_stored(wal))
        wait_until(lambda: len(_stored(wal)) >= before + rng.randint(5, chunk // 2), 30, "ingestion to progress", proc)
        kill_gateway(proc)
        kills += 1
        pub.join(30)
        assert not pub.is_alive(), "publisher did not finish"
    proc = start_gateway(site, tmp_path / "gateway.log")
    try:
        wait_until(lambda: len(_stored(wal)) >= N, 40, f"all {N} messages committed", proc)
    finally:
        stop_gateway(proc)
    assert kills == rounds
    assert _stored(wal) == set(range(N))
