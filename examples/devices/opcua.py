"""`python -m examples.devices.opcua 4840`: a simulated OPC UA server to try sitegate against.

Serves the address space the OPC UA tests use (plugins/opcua/tests/server.py, namespace
urn:sitegate:test) at opc.tcp://127.0.0.1:PORT/sitegate/test: Objects/Plant/Line1 with Temperature
(Double, 20.0 + step/10), Counter (Int64, +1 a step), Setpoint (Double, writable, 42.0), Running
(Boolean, writable) and the method Reset(Int64). The same options as that server (--period S,
--items N, --secure CERT KEY, --user NAME:PASSWORD). Prints "READY <endpoint>" once serving and runs
until Ctrl-C or SIGTERM, then exits with status 0 (serve.py; the tests start the server directly
and stop it by closing its stdin).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .serve import serve

SERVER = Path(__file__).resolve().parents[2] / "plugins" / "opcua" / "tests" / "server.py"


def _first_number() -> int:
    return next((int(a) for a in sys.argv[1:] if a.isdigit()), 0)


if __name__ == "__main__":
    serve(SERVER, _first_number())
