"""`python -m examples.devices.modbus --port 5020`: a simulated Modbus TCP device to try sitegate against.

Serves the register layout the Modbus tests use (plugins/modbus/tests/layout.py: every value
computed by hand, e.g. holding 65 = 650, holding 10..11 = 4,000,000,000 as uint32) on 127.0.0.1,
with the tests' own server (plugins/modbus/tests/modbus_server.py) and its options (--units,
--rtu-tcp-port, --serial). Prints "READY" once listening and runs until Ctrl-C or SIGTERM, then
exits with status 0 (serve.py; the tests start the server directly and stop it by closing its stdin).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .serve import serve

SERVER = Path(__file__).resolve().parents[2] / "plugins" / "modbus" / "tests" / "modbus_server.py"


def _option(name: str) -> int:
    args = sys.argv[1:]
    return int(args[args.index(name) + 1]) if name in args[:-1] else 0


if __name__ == "__main__":
    serve(SERVER, _option("--port"))
