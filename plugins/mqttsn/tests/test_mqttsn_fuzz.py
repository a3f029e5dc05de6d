"""Fuzzing the running gateway: 100,000+ random and mutated datagrams, then a real client
(mqtt-sn-12) must still be served, and traced memory must stay flat."""

from __future__ import annotations

import gc
import random
import socket
import tracemalloc

import trio

from plugins.mqttsn import codec as c
from plugins.mqttsn.codec import TopicIdType

from mqttsn_helpers import Listener, until

TOTAL = 100_000
CHUNK = 400


def corpus() -> list[bytes]:
    """Valid messages of every type, including the ones that create state (sessions, topics)."""
    msgs: list[c.Message] = [
        c.Advertise(1, 60), c.SearchGw(1), c.GwInfo(2, b"\x7f\x00\x00\x01"), c.Connack(0), c.WillTopicReq(),
        c.WillTopic("w/t", 1, True), c.WillTopic(), c.WillMsgReq(), c.WillMsg(b"bye"), c.Regack(1, 1, 0),
        c.Puback(1, 1, 0), c.Pubcomp(1), c.Pubrec(1), c.Pubrel(1), c.Suback(1, 1, 0, 1), c.Unsuback(1),
        c.Pingreq(), c.Pingreq("fz0"), c.Pingresp(), c.Disconnect(), c.Disconnect(5), c.WillTopicUpd("w/u", 0),
        c.WillTopicResp(0), c.WillMsgUpd(b"x"), c.WillMsgResp(0), c.Pubrel(7),
        c.Encapsulated(1, b"\x01\x02", c.Connect("fz-enc", 30)),
    ]
    for i in range(8):
        msgs += [
            c.Connect(f"fz{i}", 30, clean_session=bool(i % 2), will=(i % 3 == 0)),
            c.Register(0, i, f"fz/{i}/temp"),
            c.Publish(1 + i % 3, i, b"21.5", qos=i % 3),
            c.Publish(1, i, b"{\"v\": 1}", qos=-1, topic_id_type=TopicIdType.PREDEFINED),
            c.Publish(c.short_topic_id("ab"), i, b"7", qos=2, topic_id_type=TopicIdType.SHORT),
            c.Subscribe(i, f"fz/{i}/#", qos=1), c.Subscribe(i, None, 1, TopicIdType.PREDEFINED, 1),
            c.Unsubscribe(i, f"fz/{i}/#"),
        ]
    return [c.encode(m) for m in msgs]


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    kind = rng.random()
    if kind < 0.35:
        return rng.randbytes(rng.randrange(0, 300))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        if op == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1 and data:
            del data[rng.randrange(len(data)):]
        elif op == 2:
            data += rng.randbytes(rng.randrange(1, 40))
        elif op == 3 and data:
            data[0] = rng.choice((0, 1, 2, len(data), 255, rng.randrange(256)))
        elif op == 4 and len(data) > 2:
            i = rng.randrange(1, len(data))
            data[i] ^= 1 << rng.randrange(8)
    return bytes(data)


def plugin_bytes() -> int:
    """Bytes currently allocated by the plugin's own code (not the tests, not trio)."""
    snap = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(True, "*/plugins/mqttsn/*"), tracemalloc.Filter(False, "*/plugins/mqttsn/tests/*")])
    return sum(stat.size for stat in snap.statistics("filename"))


class Counter:
    def __init__(self):
        self.readings = 0

    async def __call__(self, batches):
        self.readings += sum(len(b) for b in batches)
        await trio.lowlevel.checkpoint()
        return True


async def blast(gw, socks, rng, seeds, n: int) -> None:
    port = gw.address[1]
    sent = 0
    while sent < n:
        start = gw.stats["datagrams_in"]
        batch = min(CHUNK, n - sent)
        for i in range(batch):
            socks[i % len(socks)].sendto(mutate(rng, seeds), ("127.0.0.1", port))
        sent += batch
        # Wait for the gateway to take them in (loopback drops nothing at this pace).
        await until(lambda: gw.stats["datagrams_in"] >= start + batch, timeout=30)


async def test_fuzzed_gateway_keeps_serving_with_flat_memory(harness, third_party):
    counter = Counter()
    gw, _ = await harness.gateway(deliver=counter, predefined={1: "fz/pre"}, max_sessions=16,
                                  rate_limit=1e9, rate_burst=1_000_000, anonymous_rate_limit=1e9)
    rng = random.Random(20131114)
    seeds = corpus()
    socks = []
    for _ in range(8):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # replies we never read stay small
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    try:
        # Warm-up fills every bounded table to its limit; after that memory must stay flat.
        await blast(gw, socks, rng, seeds, TOTAL // 5)
        gc.collect()
        tracemalloc.start()
        try:
            await blast(gw, socks, rng, seeds, TOTAL // 5)
            gc.collect()
            mid, mid_plugin = tracemalloc.get_traced_memory()[0], plugin_bytes()

            await blast(gw, socks, rng, seeds, TOTAL - 2 * (TOTAL // 5))
            gc.collect()
            end, end_plugin = tracemalloc.get_traced_memory()[0], plugin_bytes()

        finally:
            tracemalloc.stop()
    finally:
        for s in socks:
            s.close()
    stats = gw.stats
    assert stats["datagrams_in"] >= TOTAL
    assert stats["malformed"] > TOTAL // 4, stats
    assert stats["publishes_in"] + stats["qos_minus1_in"] > 100, stats   # the fuzz reached deep paths
    assert len(gw.sessions) <= 16
    assert stats["internal_errors"] == 0, "a datagram made a handler raise (see the log)"
    # 40,000 datagrams after the midpoint: what the gateway's own code holds may differ only
    # by its bounded caches (the payload rule cache keeps at most 1,024 (topic, client)
    # entries here, about 150 KiB, and starts again when full); the process by little more.
    print(f"FUZZ traced growth: plugin {end_plugin - mid_plugin} B, process {end - mid} B")
    assert end_plugin - mid_plugin < 256 * 1024, f"the gateway kept {end_plugin - mid_plugin} more bytes"
    assert end - mid < 512 * 1024, f"traced memory grew {end - mid} bytes over the last 40k datagrams"

    # A real client is still served: connect, publish QoS 1, subscribe and receive.
    node = third_party(gw.address[1], "after-fuzz")
    await node.do("send_connect")
    before = counter.readings
    await node.do("send_publish", "after/fuzz", b"1", 1)
    assert counter.readings == before + 1
    inbox = Listener()
    await node.do("send_subscribe", "after-fuzz/cmd", 0, inbox)
    gw.send_to_topic("after-fuzz/cmd", b"ok", 0)
    await node.poll_until(inbox, 1)
    assert inbox.messages[0].payload == b"ok"
