"""MQTT: an uplink to a broker (sink kind) and subscriptions to a broker (adapter kind).

One entry is one broker connection (connection.py). Routes that send to the entry
use its sink (sink.py); `subscribe:` turns on ingestion (adapter.py). See docs/mqtt.md.
"""

from __future__ import annotations

import re
import ssl
from typing import Any

from sitegate.errors import EntryError
from sitegate.hookspecs import hookimpl

from .adapter import Ingest
from .config import MqttConfig
from .connection import PERMANENT_REFUSALS, Connection
from .origins import book_for
from .sink import MqttSink


@hookimpl
def config_schema() -> type:
    return MqttConfig


def default_client_id(site: str, entry_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:-]", "-", f"sitegate-{site}-{entry_id}")[:64]


def _status(cfg: MqttConfig, site: str, entry_id: str, which: str) -> tuple[str, str, bool] | None:
    if cfg.status is None:
        return None
    st = cfg.status
    return st.topic.format(site=site, entry=entry_id), getattr(st, which), st.retain


@hookimpl
async def setup_entry(entry) -> None:
    cfg: MqttConfig = entry.config
    site = entry.site
    base_dir = getattr(getattr(entry.host, "loaded", None), "path", None)
    conn = Connection(
        cfg, client_id=cfg.client_id or default_client_id(site, entry.id),
        base_dir=base_dir.parent if base_dir is not None else None,
        will=_status(cfg, site, entry.id, "offline"), birth=_status(cfg, site, entry.id, "online"),
        subscriptions=[(s.filter, s.qos) for s in cfg.subscribe], manual_ack=bool(cfg.subscribe),
        on_state=lambda state, reason: entry.emit("mqtt.connection", message=f"{state}{': ' + reason if reason else ''}",
                                                  state=state, reason=reason, broker=conn.where))
    entry.data["connection"] = conn
    entry.on_unload(lambda: conn.stop(status=_status(cfg, site, entry.id, "offline")))
    await conn.start()
    await conn.wait_settled(float(cfg.connect_timeout))
    if conn.state == "refused" and conn.refusal in PERMANENT_REFUSALS:
        raise EntryError(f"{conn.where}: {conn.reason}; check username, password and client_id")
    if isinstance(conn.last_connect_error, ssl.SSLCertVerificationError):
        raise EntryError(f"{conn.where}: tls: {conn.last_connect_error}; check tls.ca and the broker's certificate")
    # An unreachable broker is not an error: paho keeps reconnecting with backoff, the sink
    # reports "not connected" to the data plane, and subscriptions resume when it is back.
    if cfg.subscribe:
        ingest = Ingest(entry, conn, cfg, book_for(entry.host))
        entry.data["ingest"] = ingest
        await entry.start(ingest.run, name=f"{entry.id}:ingest")


@hookimpl
def sink_factory(entry) -> MqttSink:
    cfg: MqttConfig = entry.config
    sink = MqttSink(entry.data["connection"], entry.site, entry.id, cfg.publish, book_for(entry.host))
    entry.data["sink"] = sink
    return sink


@hookimpl
def entry_diagnostics(entry) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "connection" in entry.data:
        out["connection"] = entry.data["connection"].describe()
    if "sink" in entry.data:
        out["sink"] = entry.data["sink"].describe()
    if "ingest" in entry.data:
        out["ingest"] = entry.data["ingest"].describe()
    return out
