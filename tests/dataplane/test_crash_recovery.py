"""SIGKILL the gateway during ingestion, again and again: every acknowledged reading arrives,
and after deduplication by msgId exactly once, in order per device."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from sitegate.testing import write_site
from tests.dataplane.dp_helpers import (acked, kill_gateway, sink_lines, start_gateway, stop_gateway,
                                        wait_until)


def _site(tmp_path: Path, producing: bool = True) -> Path:
    return write_site(tmp_path, f"""
        site: crash/test
        entries:
          - {{id: src, domain: acklog, disabled: {str(not producing).lower()},
              config: {{ack_path: {tmp_path}/ack.log, devices: 3, points: [a, b, c], interval: 0}}}}
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out.jsonl}}}}
        routes:
          - {{from: ["src.*/*"], to: [out], priority: critical}}
        """)


def _ack_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _check(tmp_path: Path) -> tuple[int, int]:
    lines = sink_lines(tmp_path / "out.jsonl")
    by_id: dict[str, tuple] = {}
    order: dict[str, list[int]] = {}
    for line in lines:
        reading = (line["device"], line["seq"], line["point"], line["value"], line["ts"])
        first = by_id.setdefault(line["msgId"], reading)
        # A msgId is one reading: a replay after a crash carries the same content.
        assert first == reading, f"msgId {line['msgId']} names two readings: {first} and {reading}"
        if first is reading:
            order.setdefault(line["device"], []).append(line["seq"])
    for device, seqs in order.items():
        assert seqs == sorted(seqs), f"{device}: first deliveries out of order"
    delivered = {(d, s) for d, s, *_ in by_id.values()}
    missing = acked(tmp_path / "ack.log") - delivered
    assert not missing, f"{len(missing)} acknowledged readings never delivered, e.g. {sorted(missing)[:5]}"
    return len(lines), len(by_id)


def _kill_loop(tmp_path: Path, rounds: int) -> None:
    site = _site(tmp_path)
    log = tmp_path / "gateway.log"
    ack = tmp_path / "ack.log"
    rng = random.Random(4)
    for _ in range(rounds):
        before = _ack_lines(ack)
        proc = start_gateway(site, log)
        # Kill at a varying point of ingestion: after a random number of acknowledged batches.
        target = before + rng.randint(1, 400)
        wait_until(lambda: _ack_lines(ack) >= target, 30, "acknowledged batches", proc)
        kill_gateway(proc)
    # Restart without the producer, so the set of acknowledged readings is final.
    proc = start_gateway(_site(tmp_path, producing=False), log)
    try:
        want = acked(ack)
        wait_until(lambda: want <= {(l["device"], l["seq"]) for l in sink_lines(tmp_path / "out.jsonl")},
                   30, "every acknowledged reading at the sink", proc, poll=0.1)
    finally:
        stop_gateway(proc)
    total, unique = _check(tmp_path)
    assert want and unique >= len(want)


def test_sigkill_during_ingestion_loses_no_acknowledged_reading(tmp_path):
    _kill_loop(tmp_path, rounds=8)


@pytest.mark.soak
def test_sigkill_soak(tmp_path, request):
    if "soak" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("soak run (60 kills): select it with -m soak")
    _kill_loop(tmp_path, rounds=60)


def test_sigkill_with_the_history_sink_stores_each_acknowledged_reading_once(tmp_path):
    def site(producing: bool) -> Path:
        return write_site(tmp_path, f"""
            site: crash/history
            entries:
              - {{id: src, domain: acklog, disabled: {str(not producing).lower()},
                  config: {{ack_path: {tmp_path}/ack.log, devices: 2, points: [a, b], interval: 0}}}}
              - {{id: history, domain: history, config: {{path: {tmp_path}/history.sqlite}}}}
            routes:
              - {{from: ["src.*/*"], to: [history], priority: critical}}
            """)
    log, ack = tmp_path / "gateway.log", tmp_path / "ack.log"
    rng = random.Random(7)
    for _ in range(4):
        before = _ack_lines(ack)
        proc = start_gateway(site(True), log)
        target = before + rng.randint(1, 300)
        wait_until(lambda: _ack_lines(ack) >= target, 30, "acknowledged batches", proc)
        kill_gateway(proc)
    want = acked(ack)

    def stored() -> list[tuple[str, int]]:
        if not (tmp_path / "history.sqlite").exists():
            return []
        conn = sqlite3.connect(tmp_path / "history.sqlite")
        try:
            return conn.execute("SELECT device, seq FROM raw").fetchall()
        finally:
            conn.close()
    proc = start_gateway(site(False), log)
    try:
        wait_until(lambda: want <= set(stored()), 30, "every acknowledged reading in the history", proc, poll=0.1)
    finally:
        stop_gateway(proc)
    rows = stored()
    assert want and len(rows) == len(set(rows))
    conn = sqlite3.connect(tmp_path / "history.sqlite")
    raw_n, = conn.execute("SELECT count(*) FROM raw").fetchone()
    hourly_n, = conn.execute("SELECT sum(count) FROM hourly").fetchone()
    daily_n, = conn.execute("SELECT sum(count) FROM daily").fetchone()
    conn.close()
    # Replays after each kill were ignored by the roll-ups too: every reading counted once.
    assert raw_n == hourly_n == daily_n


@pytest.mark.mosquitto
def test_sigkill_with_pipelined_mqtt_deliveries_in_flight_loses_nothing(tmp_path):
    """A backlog drains to MQTT with several deliver calls in flight (storage.deliveries_in_flight);
    SIGKILL mid-drain, again and again: every acknowledged reading reaches the broker, and the
    first copy of each arrives in order per device."""
    from sitegate.testing.mosquitto import Mosquitto, MqttObserver

    broker = Mosquitto(tmp_path / "broker").start()
    try:
        _pipelined_kill_loop(tmp_path, broker)
    finally:
        broker.kill()


def _pipelined_kill_loop(tmp_path: Path, broker) -> None:
    import json

    from sitegate.testing.mosquitto import MqttObserver

    def site(producing: bool) -> Path:
        return write_site(tmp_path, f"""
            site: crash
            entries:
              - {{id: src, domain: acklog, disabled: {str(not producing).lower()},
                  config: {{ack_path: {tmp_path}/ack.log, devices: 3, points: [a, b, c], interval: 0}}}}
              - id: up
                domain: mqtt
                config: {{host: 127.0.0.1, port: {broker.port}, client_id: crash-up, status: null,
                          reconnect_min: 0.05, reconnect_max: 0.2}}
            routes:
              - {{from: ["src.*/*"], to: [up], priority: critical}}
            storage: {{deliveries_in_flight: 4, retry_initial: 20ms, retry_max: 200ms}}
            """)

    log, ack = tmp_path / "gateway.log", tmp_path / "ack.log"
    rng = random.Random(11)
    with MqttObserver(broker, "crash/#", session="crash-observer", timeout=20) as obs:
        for _ in range(3):
            # A backlog of thousands of records while the broker is away, then a kill while it drains
            # (the first call after the outage goes alone, the next ones are pipelined).
            broker.stop()
            before = _ack_lines(ack)
            proc = start_gateway(site(True), log)
            wait_until(lambda: _ack_lines(ack) >= before + 8000, 30, "a backlog", proc)
            seen = len(obs.messages)
            broker.start()
            wait_until(lambda: len(obs.messages) >= seen + rng.randint(1500, 5000), 30, "delivery under way", proc)
            kill_gateway(proc)
        proc = start_gateway(site(False), log)
        try:
            want = acked(ack)

            first_at: dict[tuple[str, int], int] = {}     # reading -> index of its first arrival

            def delivered() -> dict:
                messages = obs.messages
                for k in range(delivered.seen, len(messages)):
                    doc = json.loads(messages[k].payload)
                    for i in range(len(doc["points"])):
                        first_at.setdefault((doc["deviceId"], doc["seqNo"] + i), k)
                    delivered.seen = k + 1
                return first_at

            delivered.seen = 0

            wait_until(lambda: want <= delivered().keys(), 60, "every acknowledged reading at the broker", proc,
                       poll=0.2)
        finally:
            stop_gateway(proc)
    first = delivered()
    for device in {d for d, _ in first}:
        arrivals = sorted((k, s) for (d, s), k in first.items() if d == device)
        seqs = [s for _, s in arrivals]
        assert seqs == sorted(seqs), f"{device}: first deliveries out of order"
