"""Runs one of the tests' simulated servers (which stop when their stdin closes) as a command:
until Ctrl-C, SIGTERM or SIGHUP, or until its parent process is gone, then exit status 0.

Used by modbus.py and opcua.py. If the port is taken (say, by the same docs running in another
checkout), it says so and waits for it rather than failing: runs that share a port take turns.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as asyncio's servers bind
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def serve(script: Path, port: int) -> None:
    """Run `script`'s async main() with sys.argv[1:], on a stdin that closes when we are told to stop."""
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
    if port and not port_is_free(port):
        print(f"port {port} is in use; waiting for it to be free", flush=True)
        while not port_is_free(port):
            if stopped.locked():
                return
            time.sleep(0.2)
    sys.argv = [str(script), *sys.argv[1:]]
    sys.path.insert(0, str(script.parent))
    import asyncio
    import logging
    module = importlib.import_module(script.stem)
    logging.disable(logging.WARNING)     # pymodbus and asyncua log every client that comes and goes
    asyncio.run(module.main())
