"""The factory line in one command:

    python examples/factory/run.py            # Ctrl-C stops everything

Starts the simulated devices (devices.py: Modbus press PLC and energy meter, MQTT-SN hall nodes),
an OPC-UA oven controller (plugins/opcua/tests/server.py), Mosquitto as the plant broker (left out,
with a message, when it is not installed), signs the first-party plugins into a scratch registry
and runs site.yaml.tmpl with their ports filled in, every plugin verified from that registry.
"""

from __future__ import annotations

import argparse
import io
import selectors
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OPCUA_SERVER = REPO / "plugins" / "opcua" / "tests" / "server.py"
UPLINK = """  - id: uplink
    name: Plant broker (Mosquitto)
    domain: mqtt
    config: {host: 127.0.0.1, port: $mqtt_port}"""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_child(argv: list[str], ready: str, what: str, timeout: float = 60) -> subprocess.Popen:
    """A child that prints `ready` when serving and exits when its stdin closes (when we go away)."""
    # Own session: a Ctrl-C meant for the site must not kill the devices under it mid-shutdown.
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(deadline - time.monotonic()):
            line = proc.stdout.readline()
            if line.startswith(ready):
                print(f"started {what}", flush=True)
                return proc
            if not line:
                break
    proc.kill()
    sys.exit(f"{what} did not start (exit {proc.poll()})")


def start_broker(folder: Path):
    """Mosquitto on a free port, or None (with the reason) when it is not installed."""
    # The test harness's broker helper (it needs pytest, installed with sitegate's test extra).
    from sitegate.testing.mosquitto import Mosquitto, find_mosquitto
    if find_mosquitto() is None:
        print("Mosquitto is not installed (apt-get install mosquitto): the MQTT uplink is left out", flush=True)
        return None
    broker = Mosquitto(folder / "mosquitto").start()
    print(f"started Mosquitto on {broker.url()}", flush=True)
    return broker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE / ".sitegate",
                        help="folder for the registry, the broker and the site's state, emptied first "
                             "(default: examples/factory/.sitegate)")
    parser.add_argument("--no-uplink", action="store_true", help="leave the MQTT uplink (and Mosquitto) out")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)      # a fresh registry: a site's trust never sees a "rollback"
    work.mkdir(parents=True)

    ports = {"plc_port": free_port(), "meter_port": free_port(), "mqttsn_port": free_port(socket.SOCK_DGRAM)}
    children = []
    broker = None
    try:
        children.append(start_child([sys.executable, str(HERE / "devices.py"), "--plc-port", str(ports["plc_port"]),
                                     "--meter-port", str(ports["meter_port"]), "--mqttsn-port",
                                     str(ports["mqttsn_port"])], "READY", "Modbus PLC, energy meter, MQTT-SN nodes"))
        opcua_port = free_port()
        children.append(start_child([sys.executable, str(OPCUA_SERVER), str(opcua_port), "--period", "0.5"],
                                    "READY", "OPC-UA oven controller"))
        ports["opcua_endpoint"] = f"opc.tcp://127.0.0.1:{opcua_port}/sitegate/test"
        broker = None if args.no_uplink else start_broker(work)
        if broker is not None:
            ports["mqtt_port"] = broker.port
            ports["uplink_entry"] = string.Template(UPLINK).substitute(ports)
            ports["press_sinks"] = "uplink, history"
        else:
            ports["uplink_entry"] = ""
            ports["press_sinks"] = "history"
        site = work / "site.yaml"
        site.write_text(string.Template((HERE / "site.yaml.tmpl").read_text()).substitute(ports))

        from sitegate.registry.devpublish import devpublish
        problems = devpublish(REPO / "plugins", work / "registry", out=io.StringIO())
        if problems:
            sys.exit("publishing the first-party plugins failed:\n" + "\n".join(problems))
        print(f"signed the first-party plugins into {work / 'registry'} (DEVELOPMENT keys)", flush=True)

        run = [sys.executable, "-m", "sitegate.cli", "run", str(site), "--registry", str(work / "registry")]
        print(f"$ sitegate {' '.join(run[3:])}", flush=True)
        # The site runs in a session of its own, so it gets each Ctrl-C or SIGTERM exactly once, from
        # us (a second one during its graceful shutdown would kill it); then the devices and the broker stop.
        site_proc = subprocess.Popen(run, start_new_session=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda n, _: site_proc.send_signal(n))
        return site_proc.wait()
    finally:
        for child in children:
            child.stdin.close()          # they exit when stdin closes
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
