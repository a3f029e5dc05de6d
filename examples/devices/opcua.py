"""`python -m examples.devices.opcua 4840`: a simulated OPC UA server to try sitegate against.

Serves the address space the OPC UA tests use (plugins/opcua/tests/server.py, namespace
urn:sitegate:test) at opc.tcp://127.0.0.1:PORT/sitegate/test: Objects/Plant/Line1 with Temperature
(Double, 20.0 + step/10), Counter (Int64, +1 a step), Setpoint (Double, writable, 42.0), Running
(Boolean, writable) and the method Reset(Int64). The same options as that server (--period S,
--items N, --secure CERT KEY, --user NAME:PASSWORD). Prints "READY <endpoint>" once serving and runs
until Ctrl-C or SIGTERM (or its parent process is gone), then exits with status 0. (The tests start
that server directly and stop it by closing its stdin; this entry point needs no stdin.)
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "plugins" / "opcua" / "tests" / "server.py"


def main() -> None:
    # The server runs until its stdin closes: give it a pipe that closes on SIGTERM or Ctrl-C.
    read, write = os.pipe()
    os.dup2(read, 0)
    os.close(read)
    sys.stdin = open(0, closefd=False)

    stopped = threading.Lock()

    def stop(*_):
        if stopped.acquire(blocking=False):
            os.close(write)

    def orphaned(parent: int = os.getppid()) -> None:
        # Started by a script that was killed outright: do not hold the port for ever.
        while os.getppid() == parent:
            time.sleep(1)
        stop()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    threading.Thread(target=orphaned, daemon=True).start()
    sys.argv = [str(SERVER), *sys.argv[1:]]
    sys.path.insert(0, str(SERVER.parent))
    import asyncio
    import logging

    import server
    logging.disable(logging.WARNING)     # asyncua logs every session that comes and goes
    asyncio.run(server.main())


if __name__ == "__main__":
    main()
