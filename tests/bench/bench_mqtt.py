"""MQTT figures against a real Mosquitto on loopback, each with a bare paho-mqtt baseline in the same run.

`mqtt_uplink`: readings/s the sink delivers (QoS 1, every PUBACK awaited) vs a bare paho
publisher of the same payloads. `mqtt_ingest`: readings/s the adapter ingests (QoS 1,
PUBACK only after the pipeline accepted them) vs a bare paho subscriber that only counts.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import trio

DEVICES = 50
POINTS = 10                 # readings per device batch (one MQTT message in batch mode)
UPLINK_MESSAGES = 20_000    # -> 200k readings
BATCHES_PER_DELIVERY = 500  # what one data-plane deliver() call hands over
INGEST_MESSAGES = 10_000
ROUNDS = 5


def _batches(n_messages: int):
    from sitegate.model import Batch

    points = [f"p{i}" for i in range(POINTS)]
    seq = [0] * DEVICES
    out = []
    t = 1_700_000_000.0
    for k in range(n_messages):
        d = k % DEVICES
        out.append(Batch(f"line.dev{d}", points, [20.0 + (k + i) % 7 * 0.5 for i in range(POINTS)],
                         [t + k * 0.001] * POINTS, None, "bench", seq[d]))
        seq[d] += POINTS
    return out


def _paho(client_id: str = "", **kw):
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **kw)
    c.max_inflight_messages_set(0)
    c.max_queued_messages_set(0)
    return c


def baseline_publisher(broker, messages: list[tuple[str, bytes]]) -> float:
    """Seconds for a bare paho client to publish these and receive every PUBACK."""
    done = threading.Event()
    count = [0]
    n = len(messages)

    def on_publish(c, u, mid, rc, props):
        count[0] += 1
        if count[0] == n:
            done.set()

    c = _paho()
    c.on_publish = on_publish
    c.connect(broker.host, broker.port)
    c.loop_start()
    t0 = time.perf_counter()
    for topic, payload in messages:
        c.publish(topic, payload, 1)
    if not done.wait(120):
        raise RuntimeError(f"baseline publisher: {count[0]} of {n} PUBACKs")
    elapsed = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return elapsed


def sink_run(broker, batches) -> float:
    from plugins.mqtt.config import MqttConfig
    from plugins.mqtt.connection import Connection
    from plugins.mqtt.sink import MqttSink

    async def main() -> float:
        cfg = MqttConfig(host=broker.host, port=broker.port, status=None)
        conn = Connection(cfg, client_id="bench-sink")
        await conn.start()
        if not await conn.wait_online(10):
            raise RuntimeError(f"sink did not connect: {conn.reason}")
        sink = MqttSink(conn, "bench", "uplink", cfg.publish)
        t0 = time.perf_counter()
        for i in range(0, len(batches), BATCHES_PER_DELIVERY):
            await sink.deliver(batches[i:i + BATCHES_PER_DELIVERY])
        elapsed = time.perf_counter() - t0
        await conn.stop()
        return elapsed

    return trio.run(main)


def bench_uplink(broker) -> dict:
    from plugins.mqtt.sink import MqttSink
    from plugins.mqtt.config import PublishConfig

    batches = _batches(UPLINK_MESSAGES)
    readings = UPLINK_MESSAGES * POINTS
    encoder = MqttSink(None, "bench", "uplink", PublishConfig())   # type: ignore[arg-type]
    messages = encoder.encode(batches)
    base, ours = [], []
    for _ in range(ROUNDS):
        base.append(baseline_publisher(broker, messages))
        ours.append(sink_run(broker, batches))
    baseline = readings / min(base)
    value = readings / min(ours)
    ratio = value / baseline
    return {"name": "mqtt_uplink", "value": value, "unit": "readings/s", "baseline": baseline,
            "ratio": ratio, "target": "ratio >= 0.8", "passed": ratio >= 0.8}


def _fill(broker, topic_of, payload_of, n: int) -> None:
    """Publish n QoS 1 messages for a persistent session that is currently away."""
    c = _paho()
    done = threading.Event()
    count = [0]

    def on_publish(cl, u, mid, rc, props):
        count[0] += 1
        if count[0] == n:
            done.set()

    c.on_publish = on_publish
    c.connect(broker.host, broker.port)
    c.loop_start()
    for k in range(n):
        c.publish(topic_of(k), payload_of(k), 1)
    if not done.wait(120):
        raise RuntimeError(f"fill: {count[0]} of {n} PUBACKs")
    c.disconnect()
    c.loop_stop()


def _register_session(broker, client_id: str, topic_filter: str) -> None:
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes

    c = _paho(client_id)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    subscribed = threading.Event()
    c.on_subscribe = lambda *a: subscribed.set()
    c.connect(broker.host, broker.port, clean_start=False, properties=props)
    c.loop_start()
    c.subscribe(topic_filter, 1)
    if not subscribed.wait(10):
        raise RuntimeError("could not subscribe")
    c.disconnect()
    c.loop_stop()


def baseline_subscriber(broker, n: int, topic_of, payload_of) -> float:
    """Seconds for a bare paho subscriber (auto-ack) to receive n queued QoS 1 messages."""
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes

    _register_session(broker, "bench-base-sub", "factory/#")
    _fill(broker, topic_of, payload_of, n)
    count = [0]
    done = threading.Event()
    connected_at = [0.0]
    finished_at = [0.0]

    def on_connect(c, u, flags, rc, props):
        connected_at[0] = time.monotonic()

    def on_message(c, u, m):
        count[0] += 1
        if count[0] == n:
            finished_at[0] = time.monotonic()
            done.set()

    c = _paho("bench-base-sub")
    c.on_connect = on_connect
    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    props.ReceiveMaximum = 1000
    c.connect(broker.host, broker.port, clean_start=False, properties=props)
    c.loop_start()
    if not done.wait(120):
        raise RuntimeError(f"baseline subscriber: {count[0]} of {n}")
    # From the CONNACK (the broker starts sending the queued messages) to the last one, as for ours.
    elapsed = finished_at[0] - connected_at[0]
    c.disconnect()
    c.loop_stop()
    return elapsed


def _closed_port() -> int:
    from sitegate.testing.mosquitto import free_port
    return free_port()


def ingest_run(broker, tmp: Path, n: int, topic_of, payload_of) -> float:
    """Seconds for a site with an mqtt adapter entry to ingest n queued messages (ack after commit)."""
    from sitegate.testing.harness import running_site, wait_for

    _register_session(broker, "bench-ingest", "factory/#")
    _fill(broker, topic_of, payload_of, n)
    site = f"""
site: bench
entries:
  - id: ingest
    domain: mqtt
    config:
      host: {broker.host}
      port: {broker.port}
      client_id: bench-ingest
      status: null
      subscribe:
        - filter: "factory/#"
          topic: "factory/{{zone}}/{{device}}/data"
          format: json
          values: {{temp: temp, hum: hum}}
          timestamp: ts
  # A sink that is never reachable: every reading is committed to the WAL (what "ack after
  # commit" waits for) and stays there, without delivery work blurring the ingest figure.
  - id: parked
    domain: mqtt
    config: {{host: 127.0.0.1, port: {_closed_port()}, status: null, connect_timeout: 0.1, reconnect_min: 5, reconnect_max: 30}}
routes:
  - {{from: ["ingest.*/*"], to: [parked]}}
"""

    async def main() -> float:
        async with running_site(tmp, site) as host:
            # The broker sends the queued messages as soon as it answered CONNECT, which is before
            # the site has finished loading: time from that CONNACK, as for the baseline.
            await wait_for(lambda: host.pipeline.readings_in >= 2 * n, 120, what="all readings", poll=0.005)
            await wait_for(lambda: host.entry("ingest").data["ingest"].counters["messages"] >= n, 60,
                           what="all acknowledged", poll=0.005)
            elapsed = time.monotonic() - host.entry("ingest").data["connection"].connected_at
            ingest = host.entry("ingest").data["ingest"]
            assert ingest.counters["malformed"] == 0, ingest.describe()
            stored = host.services["dataplane"].stage.readings_stored
            assert stored >= 2 * n, f"only {stored} readings reached the WAL"
            return elapsed

    return trio.run(main)


def bench_ingest(broker, tmp: Path) -> dict:
    import json

    n = INGEST_MESSAGES

    def topic_of(k: int) -> str:
        return f"factory/zone{k % 5}/dev{k % DEVICES}/data"

    def payload_of(k: int) -> bytes:
        return json.dumps({"temp": 20 + k % 10, "hum": 40.5, "ts": 1_700_000_000 + k}).encode()

    # Alternate and keep the best of each: the machine is shared, the ratio is what matters.
    base, ours = [], []
    for i in range(ROUNDS):
        base.append(baseline_subscriber(broker, n, topic_of, payload_of))
        (tmp / f"site{i}").mkdir(exist_ok=True)
        ours.append(ingest_run(broker, tmp / f"site{i}", n, topic_of, payload_of))
    readings = 2 * n
    baseline = readings / min(base)
    value = readings / min(ours)
    ratio = value / baseline
    return {"name": "mqtt_ingest", "value": value, "unit": "readings/s", "baseline": baseline,
            "ratio": ratio, "target": "ratio >= 0.5", "passed": ratio >= 0.5}


def run() -> list[dict]:
    from sitegate.testing.mosquitto import Mosquitto

    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker", options={"max_inflight_messages": 1000}).start()
        try:
            return [bench_uplink(broker), bench_ingest(broker, Path(tmp))]
        finally:
            broker.kill()


if __name__ == "__main__":
    for fig in run():
        print(fig)
