"""A sink for tests: appends every delivered reading as a JSON line to a file, with its msgId.

Controllable from outside the process: while the file named by `down_flag`
exists, deliveries fail transiently (an outage); readings whose value equals
`poison` are rejected permanently (a poison message); while `hang_flag` exists, calls never return.
"""

from __future__ import annotations

import json
import os

import attrs
import trio

from sitegate.hookspecs import hookimpl
from sitegate.model import message_id
from sitegate.plugins import SinkError


@attrs.frozen
class FileSinkConfig:
    path: str
    down_flag: str = ""
    poison: float | None = None
    local: bool = False
    hang_flag: str = ""


class FileSink:
    def __init__(self, site: str, cfg: FileSinkConfig):
        self.site = site
        self.cfg = cfg
        self.local = cfg.local
        self.fd = os.open(cfg.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.calls = 0

    async def deliver(self, batches) -> None:
        self.calls += 1
        if self.cfg.hang_flag and os.path.exists(self.cfg.hang_flag):
            await trio.sleep_forever()     # a destination that never answers
        if self.cfg.down_flag and os.path.exists(self.cfg.down_flag):
            raise SinkError("destination is down (flag file present)")
        lines = []
        for b in batches:
            for i, (p, v, t, q) in enumerate(b.rows()):
                if self.cfg.poison is not None and v == self.cfg.poison:
                    raise SinkError(f"value {v!r} of {b.device}/{p} is not acceptable", permanent=True)
                lines.append(json.dumps({"msgId": message_id(self.site, b.device, b.seq + i), "device": b.device,
                                         "seq": b.seq + i, "point": p, "value": v, "ts": t}))
        if lines:
            # One write per call: the OS keeps it even if this process is killed right after.
            os.write(self.fd, ("\n".join(lines) + "\n").encode())
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        os.close(self.fd)


@hookimpl
def config_schema():
    return FileSinkConfig


@hookimpl
async def setup_entry(entry) -> None:
    sink = FileSink(entry.site, entry.config)
    entry.data["filesink"] = sink
    entry.on_unload(sink.close)


@hookimpl
def sink_factory(entry):
    return entry.data["filesink"]
