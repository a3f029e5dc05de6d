"""Test sink: stores readings by msgId and can misbehave the ways real destinations do.

mode ok: acknowledges everything; hang: never answers (a wedged connection);
lose_acks: N: stores the first N deliveries but the acknowledgement is lost,
so the core delivers them again (a replay after a reconnect).
"""
import attrs
import trio
from sitegate.hookspecs import hookimpl
from sitegate.plugins import SinkError


@attrs.frozen
class Config:
    mode: str = "ok"
    lose_acks: int = 0


class Sink:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.seen: set[tuple[str, int]] = set()
        self.duplicates = 0
        self.lost = 0

    async def deliver(self, batches):
        if self.cfg.mode == "hang":
            await trio.sleep_forever()
        for b in batches:
            for i in range(len(b)):
                key = (b.device, b.seq + i)
                if key in self.seen:
                    self.duplicates += 1
                else:
                    self.seen.add(key)
        await trio.lowlevel.checkpoint()
        if self.lost < self.cfg.lose_acks:
            self.lost += 1
            raise SinkError("connection reset before the acknowledgement arrived")


@hookimpl
def config_schema():
    return Config


@hookimpl
async def setup_entry(entry):
    pass


@hookimpl
def sink_factory(entry):
    return Sink(entry.config)
