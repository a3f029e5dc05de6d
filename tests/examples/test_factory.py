"""examples/factory: one command starts the devices, the broker and the site; data reaches history and MQTT."""

from __future__ import annotations

import re
import sys
import threading

from sitegate.testing.mosquitto import find_mosquitto

from example_runs import REPO, Child, history_rows

RUN = REPO / "examples" / "factory" / "run.py"


def subscribe_all(port: int, got: list, ready: threading.Event):
    import paho.mqtt.client as mqtt
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *a: c.subscribe("#", 1)
    client.on_subscribe = lambda *a: ready.set()
    client.on_message = lambda c, u, m: got.append(m.topic)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_factory_line_runs_from_one_command(tmp_path):
    uplink = find_mosquitto() is not None
    child = Child([sys.executable, str(RUN), "--work", str(tmp_path)])
    client = None
    try:
        entries = 6 if uplink else 5
        child.wait_line(f"running with {entries} entries", timeout=180)
        assert re.search(r"dashboard on http://127\.0\.0\.1:\d+/#token=sg_\w+", child.output), child.output[-3000:]
        state = tmp_path / ".sitegate"
        devices = lambda: {d for d, _, _ in history_rows(state, "history")}   # noqa: E731
        child.wait_until(lambda: {"press", "oven"} <= devices() and any(d.startswith("hall.") for d in devices()),
                         60, "press, oven and hall readings in the history")
        # The meter goes through a 10 s window: its first min/max/avg rows close the first window.
        child.wait_until(lambda: any(d == "meter" and p == "power.avg" for d, p, _ in history_rows(state, "history")),
                         60, "the meter's windowed power.avg in the history")
        if uplink:
            port = int(re.search(r"started Mosquitto on mqtt://127\.0\.0\.1:(\d+)", child.output).group(1))
            got: list[str] = []
            ready = threading.Event()
            client = subscribe_all(port, got, ready)
            child.wait_until(ready.is_set, 20, "a subscription on the plant broker")
            child.wait_until(lambda: any("press" in t for t in got), 60, "press readings on the plant broker")
        assert "setup_retry" not in child.output and "setup_error" not in child.output, child.output[-5000:]
        # A clean start: no library complaining about our settings (the OPC-UA client once asked for an
        # hour-long session and warned at each start that it got ten minutes). The watchdog's
        # "event loop blocked" depends on this shared machine's load, not on the example.
        start = child.output[:child.output.index(f"running with {entries} entries")]
        noise = [line for line in start.splitlines() if re.search(r"\b(WARNING|ERROR)\b", line)
                 and "event loop blocked" not in line]
        assert not noise, noise
    finally:
        if client is not None:
            client.disconnect()
            client.loop_stop()
        status = child.stop()
    assert status == 0, child.output[-5000:]
