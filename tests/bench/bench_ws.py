"""ws_fanout: ingestion readings/s with 100 WebSocket clients subscribed to live readings, against
the same ingestion with none, in alternating phases of one run; and how long a stalled client
stays above the queue's soft limit before it is disconnected.

The ingestion is the simulator flat out (100 devices x 2 points), so every bit of CPU the fan-out
takes shows. `ratio` is the median over phases with clients of each against the phases without
on either side (value and baseline are the medians); `ws_fanout_per_cpu` compares readings per
CPU second of the gateway process, which the machine's other load disturbs less. The clients run
in a child process and only drain their sockets (as browsers' native WebSockets cost the gateway
nothing more), so the figures are the gateway's own cost. Run alone: `make bench BENCH=ws`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[2]
CLIENTS = 100
RATE = 5.0           # max_rate of each client's subscription (messages/s): the API's default
PHASE = 1.0          # seconds per measurement phase
ROUNDS = 10          # phases without, then with, the subscriptions, then a last one without
SOFT_TIME = 2.0      # the site's api.queue_soft_time for this run


def _site(folder: Path) -> Path:
    path = folder / "site.yaml"
    path.write_text(f"""site: bench-ws
runtime:
  state_dir: {folder / 'state'}
entries:
  - {{id: sim, domain: simulator, config: {{devices: 100, interval: 0.0001}}}}
api:
  port: 0
  queue_soft_time: {SOFT_TIME}
observability:
  metrics: false
""")
    return path


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


async def _rate(host, seconds: float) -> float:
    n0, t0 = host.pipeline.readings_in, time.perf_counter()
    await trio.sleep(seconds)
    return (host.pipeline.readings_in - n0) / (time.perf_counter() - t0)


async def _wait(cond, timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not cond():
            await trio.sleep(0.05)
        return
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


async def _stalled_client(server, token: str) -> dict:
    """A client that subscribes a lot and then reads nothing; returns the server's disconnect record."""
    from trio_websocket import open_websocket_url

    before = server.counters["slow_disconnects"]
    t0 = time.monotonic()
    try:
        async with open_websocket_url(server.ws_url) as ws:
            await ws.get_message()
            await ws.send_message(json.dumps({"type": "auth", "access_token": token}))
            await ws.get_message()
            for i in range(1, 21):   # 20 x 50 messages/s: over the soft limit quickly, under the hard cap
                await ws.send_message(json.dumps({"id": i, "type": "subscribe_readings", "max_rate": 50}))
            await _wait(lambda: server.counters["slow_disconnects"] > before, 60, "the stalled client's disconnect")
    except Exception:  # noqa: BLE001 - the server closing on us is the point
        pass
    record = dict(server.disconnects[-1])
    record["total"] = time.monotonic() - t0
    return record


async def _measure(site: Path) -> dict:
    from sitegate.api import start_api
    from sitegate.api.tokens import TokenStore
    from sitegate.config import load_site
    from sitegate.host import SiteHost
    from sitegate.loader import DevFolderSource

    host = SiteHost(load_site(site), DevFolderSource(REPO / "plugins", warn=False))
    out: dict = {"without": [], "with": [], "cpu_without": [], "cpu_with": [], "cpu_clients": []}
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        server = await start_api(host, nursery)
        token, _ = TokenStore(host.state_dir).create("viewer", "bench")
        proc = await trio.lowlevel.open_process(
            [sys.executable, __file__, "--clients", server.ws_url, token, str(CLIENTS), str(RATE)],
            stdin=subprocess.PIPE, cwd=str(REPO))
        members = lambda: sum(len(g.members) for g in server.readings.groups.values())  # noqa: E731
        await _wait(lambda: len(server.connections) >= CLIENTS, 60, f"{CLIENTS} clients to connect")
        await trio.sleep(1.0)                               # warm-up
        sent = 0.0
        # Alternate phases without and with the subscriptions (clients stay connected), so a
        # change in the machine's load colours both figures alike.
        for _ in range(ROUNDS):
            t0 = time.process_time()
            out["without"].append(await _rate(host, PHASE))
            out["cpu_without"].append(time.process_time() - t0)
            await proc.stdin.send_all(b"sub\n")
            await _wait(lambda: members() >= CLIENTS, 60, f"{CLIENTS} clients to subscribe")
            await trio.sleep(0.3)
            sent0 = sum(c.sent for c in server.connections.values())
            t0, c0 = time.process_time(), _cpu_of(proc.pid)
            out["with"].append(await _rate(host, PHASE))
            out["cpu_with"].append(time.process_time() - t0)
            out["cpu_clients"].append(_cpu_of(proc.pid) - c0)
            sent += sum(c.sent for c in server.connections.values()) - sent0
            await proc.stdin.send_all(b"unsub\n")
            await _wait(lambda: members() == 0, 60, "the clients to unsubscribe")
            await trio.sleep(0.3)
        t0 = time.process_time()
        out["without"].append(await _rate(host, PHASE))
        out["cpu_without"].append(time.process_time() - t0)
        out["messages_per_s"] = sent / (PHASE * ROUNDS)
        out["peak_queue"] = max((c.peak for c in server.connections.values()), default=0)
        proc.kill()
        await proc.wait()
        await _wait(lambda: not server.connections, 30, "the clients to be gone")
        out["stalled"] = await _stalled_client(server, token)
        await server.aclose()
        await host.shutdown()
        nursery.cancel_scope.cancel()
    return out


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        m = trio.run(_measure, _site(Path(tmp)))
    baseline = statistics.median(m["without"])
    value = statistics.median(m["with"])
    # Each phase with clients against the mean of the phases without on either side, then the
    # median: the machine is shared, so its load drifts and spikes during the run.
    w = m["without"]
    ratio = statistics.median(x / ((w[i] + w[i + 1]) / 2) for i, x in enumerate(m["with"]))
    per_cpu = (sum(m["with"]) / sum(m["cpu_with"])) / (sum(w) / sum(m["cpu_without"]))
    over = m["stalled"]["over_soft_for"]
    print(f"# ws_fanout: median {value:.0f} readings/s with {CLIENTS} subscribed clients ({m['messages_per_s']:.0f} "
          f"messages/s sent, peak queue {m['peak_queue']}), {baseline:.0f} without; per phase with "
          f"{[round(x) for x in m['with']]}, without {[round(x) for x in m['without']]}; process CPU s per "
          f"{PHASE:g} s phase with {[round(x, 2) for x in m['cpu_with']]}, without "
          f"{[round(x, 2) for x in m['cpu_without']]}, clients' process {[round(x, 2) for x in m['cpu_clients']]}; "
          f"readings per CPU second of the gateway, with/without: {per_cpu:.3f}; stalled client: {m['stalled']['reason']} "
          f"({m['stalled']['total']:.2f} s from connect to disconnect)", file=sys.stderr)
    return [
        {"name": "ws_fanout", "value": round(value), "unit": "readings/s", "baseline": round(baseline),
         "ratio": round(ratio, 3), "target": "ratio>=0.9", "passed": ratio >= 0.9},
        {"name": "ws_fanout_per_cpu", "value": round(per_cpu, 3), "unit": "ratio_of_readings_per_cpu_second",
         "baseline": None, "ratio": None, "target": "value>=0.9", "passed": per_cpu >= 0.9},
        {"name": "ws_stalled_client_disconnect", "value": round(over, 3), "unit": "s_over_soft_limit",
         "baseline": None, "ratio": None, "target": f"value<={SOFT_TIME + 0.5:g}s(soft_limit={SOFT_TIME:g}s)",
         "passed": SOFT_TIME <= over <= SOFT_TIME + 0.5},
    ]


# --- the client process ---------------------------------------------------------------------------
async def _clients(url: str, token: str, n: int, rate: float) -> None:
    """n clients; each line on stdin, `sub` or `unsub`, subscribes or unsubscribes all of them.

    Each does the real handshake (offering permessage-deflate, as browsers do) and login with
    wsproto, then only drains its socket: as cheap as a browser's native WebSocket, so the
    figure is the gateway's own cost."""
    from urllib.parse import urlsplit

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage
    from wsproto.extensions import PerMessageDeflate

    parts = urlsplit(url)
    channels = [trio.open_memory_channel(10) for _ in range(n)]
    received = [0] * n

    async def one(i: int) -> None:
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=parts.netloc, target=parts.path,
                                              extensions=[PerMessageDeflate()])))

        async def until(pred) -> None:
            while not any(pred(e) for e in ws.events()):
                ws.receive_data(await stream.receive_some(65536))

        await until(lambda e: isinstance(e, AcceptConnection))
        await until(lambda e: isinstance(e, TextMessage) and "auth_required" in e.data)
        await stream.send_all(ws.send(TextMessage(json.dumps({"type": "auth", "access_token": token}))))
        await until(lambda e: isinstance(e, TextMessage) and "auth_ok" in e.data)

        async def drain() -> None:
            while True:
                data = await stream.receive_some(262144)
                if not data:
                    return
                received[i] += len(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            next_id, sub = 1, None
            async for cmd in channels[i][1]:
                if cmd == "sub":
                    sub = next_id
                    msg = {"id": next_id, "type": "subscribe_readings", "max_rate": rate}
                else:
                    msg = {"id": next_id, "type": "unsubscribe", "subscription": sub}
                await stream.send_all(ws.send(TextMessage(json.dumps(msg))))
                next_id += 1

    async def control() -> None:
        stdin = trio.lowlevel.FdStream(0)
        buf = b""
        while True:
            data = await stdin.receive_some()
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                for send, _ in channels:
                    await send.send(line.decode().strip())

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
        await control()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--clients":
        trio.run(_clients, sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        for fig in run():
            print(fig)
