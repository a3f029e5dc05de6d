"""`python -m examples.devices.modbus --port 5020`: a simulated Modbus TCP device to try sitegate against.

Serves the register layout the Modbus tests use (plugins/modbus/tests/layout.py: every value
computed by hand, e.g. holding 65 = 650, holding 10..11 = 4,000,000,000 as uint32) on 127.0.0.1,
with the tests' own server (plugins/modbus/tests/modbus_server.py). Prints "READY" once listening
and runs until Ctrl-C or SIGTERM (or its parent process is gone), then exits with status 0. (The
tests start that server directly and stop it by closing its stdin; this entry point needs no stdin.)
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "plugins" / "modbus" / "tests" / "modbus_server.py"


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

    import modbus_server
    logging.disable(logging.WARNING)     # pymodbus logs every client that goes away
    asyncio.run(modbus_server.main())


if __name__ == "__main__":
    main()
