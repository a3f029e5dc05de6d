"""MQTT-SN gateway benchmarks: 1,000 simulated sensor nodes on loopback UDP.

`mqttsn_qos0`: readings/s taken into the core pipeline from 1,000 connected clients
(each subscribed to its own command topic, as real nodes are) publishing at QoS 0 (offered faster than the target; the figure is what the gateway
took in while saturated). `mqttsn_qos1`: acknowledged publishes/s at QoS 1, each client
with one publish outstanding (as the spec allows), and the p99 PUBACK latency (with
1,000 publishes always in flight, latency is about 1,000 / throughput: Little's law);
`mqttsn_qos1_p99_at_2000`: the p99 PUBACK latency when the same clients offer 2,000/s.
The load generator is another process using the plugin's codec. Baseline, same run,
same load generator: a bare UDP server that counts (QoS 0) or answers PUBACK (QoS 1)
without sessions, topics, payload mapping or pipeline: the ratio is the share of
the transport's ceiling the full gateway keeps. The `*_per_cpu_second` figures read the
same runs per CPU second of the gateway process, which stays meaningful when the machine
is shared and the wall-clock rate only says how much CPU the process was given.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import sys
import time
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[2]
CLIENTS = 1000
SECONDS = 3.0
PACED_QOS1 = 2_000          # publishes/s offered for the latency of an unsaturated gateway
OFFERED_QOS0 = 50_000       # datagrams/s the generator offers at QoS 0 (above the 30,000 target)
TOPIC_ID = 1


# --- load generator (runs in its own process) --------------------------------------------

def _loadgen(mode: str, port: int, clients: int, seconds: float) -> dict:
    from plugins.mqttsn import codec as c

    addr = ("127.0.0.1", port)
    socks = []
    for _ in range(clients):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    # CONNECT every client (resent until CONNACK: UDP may drop under a burst).
    waiting = set(range(clients))
    deadline = time.monotonic() + 20
    while waiting and time.monotonic() < deadline:
        for i in list(waiting)[:200]:
            socks[i].sendto(c.encode(c.Connect(f"bench-{i}", 600)), addr)
        t_resend = time.monotonic() + 0.5
        while waiting and time.monotonic() < t_resend:
            for key, _ in sel.select(0.05):
                i = key.data
                try:
                    while True:
                        data = socks[i].recv(64)
                        if data[1] == c.MsgType.CONNACK and data[2] == 0:
                            waiting.discard(i)
                except BlockingIOError:
                    pass
    if waiting:
        raise RuntimeError(f"{len(waiting)} clients got no CONNACK")
    # Every node listens for its commands, as real ones do (so publishes meet subscriptions).
    waiting = set(range(clients))
    deadline = time.monotonic() + 20
    while waiting and time.monotonic() < deadline:
        for i in list(waiting)[:200]:
            socks[i].sendto(c.encode(c.Subscribe(1, f"bench-{i}/cmd/#", qos=1)), addr)
        t_resend = time.monotonic() + 0.5
        while waiting and time.monotonic() < t_resend:
            for key, _ in sel.select(0.05):
                i = key.data
                try:
                    while True:
                        data = socks[i].recv(64)
                        if data[1] == c.MsgType.SUBACK and data[7] == 0:
                            waiting.discard(i)
                except BlockingIOError:
                    pass
    if waiting:
        raise RuntimeError(f"{len(waiting)} clients got no SUBACK")

    if mode == "qos0":
        wire = c.encode(c.Publish(TOPIC_ID, 0, b"21.5", qos=0, topic_id_type=c.TopicIdType.PREDEFINED))
        step = 0.005
        per_step = int(OFFERED_QOS0 * step)
        sent = dropped = 0
        t0 = time.monotonic()
        nxt = t0
        i = 0
        while True:
            now = time.monotonic()
            if now - t0 >= seconds:
                break
            for _ in range(per_step):
                try:
                    socks[i].sendto(wire, addr)
                    sent += 1
                except BlockingIOError:
                    dropped += 1
                i = (i + 1) % clients
            nxt += step
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return {"t0": t0, "t1": time.monotonic(), "sent": sent, "send_dropped": dropped}

    # qos1: closed loop, one outstanding publish per client (the most the spec allows).
    # qos1paced: the same clients offering PACED_QOS1 publishes/s in all, for the latency
    # of a gateway that is not saturated.
    paced = mode == "qos1paced"
    wires = {}

    def publish(i: int, mid: int) -> None:
        w = wires.get(mid)
        if w is None:
            w = wires[mid] = c.encode(c.Publish(TOPIC_ID, mid, b"21.5", qos=1,
                                                topic_id_type=c.TopicIdType.PREDEFINED))
        socks[i].sendto(w, addr)

    mids = [1] * clients
    sent_at = [0.0] * clients
    busy = [False] * clients
    lat: list[float] = []
    congestion = resent = 0
    t0 = time.monotonic()
    if not paced:
        for i in range(clients):
            sent_at[i] = time.perf_counter()
            busy[i] = True
            publish(i, 1)
    end = t0 + seconds
    last_check = t0
    step = 0.005
    next_step = t0
    rr = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if paced and now >= next_step:
            next_step += step
            for _ in range(int(PACED_QOS1 * step)):
                for _ in range(clients):         # the next idle client
                    rr = (rr + 1) % clients
                    if not busy[rr]:
                        break
                if not busy[rr]:
                    busy[rr] = True
                    sent_at[rr] = time.perf_counter()
                    publish(rr, mids[rr])
        for key, _ in sel.select(0.002 if paced else 0.05):
            i = key.data
            s = socks[i]
            try:
                while True:
                    data = s.recv(64)
                    if len(data) != 7 or data[1] != c.MsgType.PUBACK:
                        continue
                    mid = (data[4] << 8) | data[5]
                    if mid != mids[i]:
                        continue
                    t = time.perf_counter()
                    if data[6] == 0:
                        lat.append(t - sent_at[i])
                        mids[i] = mid % 0xFFFF + 1
                    else:
                        congestion += 1
                    if paced and data[6] == 0:
                        busy[i] = False
                        continue
                    sent_at[i] = t
                    publish(i, mids[i])
            except BlockingIOError:
                pass
        if now - last_check > 0.5:   # a datagram lost on the way: send it again
            last_check = now
            t = time.perf_counter()
            for i in range(clients):
                if busy[i] and t - sent_at[i] > 1.0:
                    sent_at[i] = t
                    resent += 1
                    publish(i, mids[i])
    t1 = time.monotonic()
    lat.sort()
    p99 = lat[int(len(lat) * 0.99) - 1] if lat else float("nan")
    return {"t0": t0, "t1": t1, "acked": len(lat), "p99_ms": p99 * 1000, "p50_ms": lat[len(lat) // 2] * 1000
            if lat else float("nan"), "congestion": congestion, "resent": resent}


# --- servers under test (in this process) --------------------------------------------------

async def _run_loadgen(mode: str, port: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = await trio.run_process(
        [sys.executable, "-m", "tests.bench.bench_mqttsn", "--loadgen", mode, str(port), str(CLIENTS), str(SECONDS)],
        cwd=str(REPO), env=env, capture_stdout=True, capture_stderr=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {proc.stderr.decode()[-2000:]}")
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


class _Sampler:
    """(monotonic time, count, CPU time of this process) every 20 ms, to read the rate
    inside the load window, by wall clock and by CPU second (the machine may be shared)."""

    def __init__(self, count):
        self.count = count
        self.samples: list[tuple[float, int, float]] = []

    async def run(self):
        while True:
            self.samples.append((time.monotonic(), self.count(), time.process_time()))
            await trio.sleep(0.02)

    def _window(self, t0: float, t1: float):
        # Skip the first 0.3 s (connect burst settling) and read until the generator stopped.
        a = [s for s in self.samples if s[0] >= t0 + 0.3]
        b = [s for s in self.samples if s[0] <= t1]
        if not a or not b or b[-1][0] <= a[0][0]:
            return None
        return a[0], b[-1]

    def rate(self, t0: float, t1: float) -> float:
        w = self._window(t0, t1)
        return 0.0 if w is None else (w[1][1] - w[0][1]) / (w[1][0] - w[0][0])

    def per_cpu_second(self, t0: float, t1: float) -> float:
        w = self._window(t0, t1)
        return 0.0 if w is None or w[1][2] <= w[0][2] else (w[1][1] - w[0][1]) / (w[1][2] - w[0][2])

    def cpu_share(self, t0: float, t1: float) -> float:
        w = self._window(t0, t1)
        return 0.0 if w is None else (w[1][2] - w[0][2]) / (w[1][0] - w[0][0])


async def _gateway_run(mode: str) -> dict:
    from plugins.mqttsn.config import GatewayConfig
    from plugins.mqttsn.gateway import Gateway
    from sitegate.pipeline import Pipeline

    pipeline = Pipeline("bench")

    async def deliver(batches) -> bool:     # what the entry does, without a data plane behind it
        if pipeline.saturated():
            return False
        await pipeline.submit_many(batches)
        return True

    cfg = GatewayConfig(host="127.0.0.1", port=0, predefined={TOPIC_ID: "bench/temp"}, max_sessions=CLIENTS + 10,
                        rate_limit=1e6, rate_burst=1_000_000)
    gw = Gateway(cfg, deliver, device_prefix="bench.", source="bench")
    sampler = _Sampler(lambda: pipeline.readings_in)
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(gw.serve)
        nursery.start_soon(sampler.run)
        result = await _run_loadgen(mode, addr[1])
        nursery.cancel_scope.cancel()
    result["rate"] = sampler.rate(result["t0"], result["t1"])
    result["per_cpu"] = sampler.per_cpu_second(result["t0"], result["t1"])
    result["cpu_share"] = sampler.cpu_share(result["t0"], result["t1"])
    result["stats"] = dict(gw.stats)
    return result


async def _bare_udp_run(mode: str) -> dict:
    """The transport's ceiling: same drain loop, no protocol beyond answering CONNECT/PUBLISH."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    counted = [0]
    connack = b"\x03\x05\x00"

    async def serve():
        while True:
            await trio.lowlevel.wait_readable(sock)
            for _ in range(512):
                try:
                    data, a = sock.recvfrom(2048)
                except BlockingIOError:
                    break
                if len(data) > 2 and data[1] == 0x04:
                    sock.sendto(connack, a)
                elif len(data) > 4 and data[1] == 0x12:
                    sock.sendto(b"\x08\x13\x20\x00\x00" + data[3:5] + b"\x00", a)
                elif len(data) >= 7 and data[1] == 0x0C:
                    counted[0] += 1
                    if data[2] & 0x60 == 0x20:
                        sock.sendto(b"\x07\x0d" + data[3:7] + b"\x00", a)
            await trio.lowlevel.checkpoint()

    sampler = _Sampler(lambda: counted[0])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        nursery.start_soon(sampler.run)
        result = await _run_loadgen(mode, sock.getsockname()[1])
        nursery.cancel_scope.cancel()
    sock.close()
    result["rate"] = sampler.rate(result["t0"], result["t1"])
    result["per_cpu"] = sampler.per_cpu_second(result["t0"], result["t1"])
    return result


def run() -> list[dict]:
    base0 = trio.run(_bare_udp_run, "qos0")
    gw0 = trio.run(_gateway_run, "qos0")
    base1 = trio.run(_bare_udp_run, "qos1")
    gw1 = trio.run(_gateway_run, "qos1")
    base1p = trio.run(_bare_udp_run, "qos1paced")
    gw1p = trio.run(_gateway_run, "qos1paced")
    qos1_rate = gw1["acked"] / (gw1["t1"] - gw1["t0"])
    base1_rate = base1["acked"] / (base1["t1"] - base1["t0"])
    figures = [
        {"name": "mqttsn_qos0", "value": round(gw0["rate"]), "unit": "publishes/s",
         "baseline": round(base0["rate"]), "ratio": round(gw0["rate"] / base0["rate"], 3) if base0["rate"] else None,
         "target": ">= 30000", "passed": gw0["rate"] >= 30_000},
        {"name": "mqttsn_qos1", "value": round(qos1_rate), "unit": "acked publishes/s",
         "baseline": round(base1_rate), "ratio": round(qos1_rate / base1_rate, 3) if base1_rate else None,
         "target": ">= 10000", "passed": qos1_rate >= 10_000},
        {"name": "mqttsn_qos1_p99", "value": round(gw1["p99_ms"], 2), "unit": "ms PUBACK latency p99",
         "baseline": round(base1["p99_ms"], 2), "ratio": round(gw1["p99_ms"] / base1["p99_ms"], 2)
         if base1["p99_ms"] else None, "target": "reported", "passed": gw1["acked"] > 0},
    ]
    figures.append(
        # The same run read per CPU second of the gateway process: what one uncontended core
        # would carry (the benchmark machine is shared, so wall-clock rates vary run to run).
        {"name": "mqttsn_qos0_per_cpu_second", "value": round(gw0["per_cpu"]), "unit": "publishes/cpu-s",
         "baseline": round(base0["per_cpu"]), "ratio": round(gw0["per_cpu"] / base0["per_cpu"], 3)
         if base0["per_cpu"] else None, "target": ">= 30000", "passed": gw0["per_cpu"] >= 30_000})
    figures.append(
        {"name": "mqttsn_qos1_p99_at_2000", "value": round(gw1p["p99_ms"], 2),
         "unit": f"ms PUBACK latency p99 at {PACED_QOS1} publishes/s", "baseline": round(base1p["p99_ms"], 2),
         "ratio": round(gw1p["p99_ms"] / base1p["p99_ms"], 2) if base1p["p99_ms"] else None,
         "target": "reported", "passed": gw1p["acked"] > 0})
    figures.append(
        {"name": "mqttsn_qos1_per_cpu_second", "value": round(gw1["per_cpu"]), "unit": "acked publishes/cpu-s",
         "baseline": round(base1["per_cpu"]), "ratio": round(gw1["per_cpu"] / base1["per_cpu"], 3)
         if base1["per_cpu"] else None, "target": ">= 10000", "passed": gw1["per_cpu"] >= 10_000})
    print(f"# mqttsn qos0: gateway process had {gw0['cpu_share']:.0%} of a core during the load window",
          file=sys.stderr)
    print(f"# mqttsn qos0: offered {gw0['sent'] / (gw0['t1'] - gw0['t0']):.0f}/s, gateway stats {gw0['stats']}",
          file=sys.stderr)
    print(f"# mqttsn qos1: p50 {gw1['p50_ms']:.2f} ms, congestion {gw1['congestion']}, resent {gw1['resent']}",
          file=sys.stderr)
    return figures


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--loadgen":
        mode, port, clients, seconds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        print(json.dumps(_loadgen(mode, port, clients, seconds)))
    else:
        for fig in run():
            print(fig)
