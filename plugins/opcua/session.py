"""One OPC UA session, living on the asyncio island: connect, subscribe, read, write, call, browse.

Everything here is asyncio (asyncua) and runs in the island's thread; the
trio side (__init__.py) calls it through `AsyncioIsland.call` and receives
data-change notifications through an `Inbox`.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.crypto import security_policies

from sitegate.errors import EntryError, EntryNotReady
from sitegate.model import Quality

from .config import OpcuaConfig

_STATUS_TO_QUALITY = {
    "BadCommunicationError": Quality.BAD_COMM, "BadNotConnected": Quality.BAD_COMM,
    "BadServerNotConnected": Quality.BAD_COMM, "BadNoCommunication": Quality.BAD_COMM,
    "BadTimeout": Quality.BAD_TIMEOUT, "BadSensorFailure": Quality.BAD_SENSOR,
    "BadOutOfService": Quality.BAD_OFFLINE, "BadConfigurationError": Quality.BAD_CONFIG,
    "BadDeviceFailure": Quality.BAD_DEVICE,
}


def quality_of(status: ua.StatusCode | None) -> int:
    if status is None:
        return Quality.GOOD
    value = status.value
    if value & 0x80000000:
        return _STATUS_TO_QUALITY.get(status.name, Quality.BAD)
    if value & 0x40000000:
        return Quality.UNCERTAIN
    return Quality.GOOD


def fingerprint(der: bytes) -> str:
    return hashlib.sha1(der).hexdigest()


def _der(cert_bytes: bytes) -> bytes:
    if cert_bytes.startswith(b"-----BEGIN"):
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding
        return x509.load_pem_x509_certificate(cert_bytes).public_bytes(Encoding.DER)
    return cert_bytes


class Session:
    """Holds the asyncua Client and what was subscribed; rebuilt on every reconnect."""

    def __init__(self, cfg: OpcuaConfig, base: Path, put):
        self.cfg = cfg
        self.base = base
        self.put = put                    # Inbox.put: (point, value, source_ts, quality)
        self.client: Client | None = None
        self.nodes: dict[str, Any] = {}   # point name -> Node
        self.by_nodeid: dict[str, str] = {}
        self.subscription = None
        self.last_notified: dict[str, tuple[Any, float]] = {}   # point -> (value, source ts)
        self.notifications = 0
        self.server_certificate: bytes | None = None

    def _path(self, p: str) -> str:
        return str(p if Path(p).is_absolute() else self.base / p)

    # --- asyncua handler protocol ----------------------------------------------
    def datachange_notification(self, node, val, data) -> None:
        point = self.by_nodeid.get(node.nodeid.to_string())
        if point is None:
            return
        dv = data.monitored_item.Value
        ts = dv.SourceTimestamp or dv.ServerTimestamp
        ts = ts.timestamp() if ts is not None else time.time()
        self.notifications += 1
        self.last_notified[point] = (val, ts)
        self.put((point, val, ts, quality_of(dv.StatusCode)))

    def status_change_notification(self, status) -> None:
        self.put(("__status__", str(status.Status), time.time(), Quality.BAD_COMM))

    # --- trust -------------------------------------------------------------------
    async def _check_server_certificate(self) -> bytes | None:
        sec = self.cfg.security
        if sec.mode == "None":
            return None
        endpoints = await Client(self.cfg.endpoint, timeout=float(self.cfg.timeout)).connect_and_get_server_endpoints()
        wanted = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}[sec.mode]
        uri = f"http://opcfoundation.org/UA/SecurityPolicy#{sec.policy}"
        match = [e for e in endpoints if e.SecurityMode == wanted and e.SecurityPolicyUri == uri]
        if not match:
            offered = ", ".join(sorted({f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}" for e in endpoints}))
            raise EntryError(f"server {self.cfg.endpoint} offers no {sec.policy}/{sec.mode} endpoint (it offers: {offered})")
        der = _der(match[0].ServerCertificate)
        from cryptography import x509
        cert = x509.load_der_x509_certificate(der)
        fp = fingerprint(der)
        subject = cert.subject.rfc4514_string()
        now = time.time()
        if cert.not_valid_after_utc.timestamp() < now:
            raise EntryError(f"server certificate of {self.cfg.endpoint} ({subject}) expired on "
                             f"{cert.not_valid_after_utc:%Y-%m-%d}; the server needs a new certificate")
        if cert.not_valid_before_utc.timestamp() > now + 300:
            raise EntryError(f"server certificate of {self.cfg.endpoint} ({subject}) is not valid before "
                             f"{cert.not_valid_before_utc:%Y-%m-%d}")
        if sec.trust:
            trust = Path(self._path(sec.trust))
            trusted = set()
            for f in trust.glob("*") if trust.is_dir() else []:
                if f.suffix.lower() in (".der", ".pem", ".crt", ".cer"):
                    try:
                        trusted.add(fingerprint(_der(f.read_bytes())))
                    except ValueError:
                        continue
            if fp not in trusted:
                rejected = trust.parent / "rejected"
                rejected.mkdir(parents=True, exist_ok=True)
                (rejected / f"{fp}.der").write_bytes(der)
                raise EntryError(
                    f"untrusted server certificate from {self.cfg.endpoint}: {subject}, SHA-1 {fp}. "
                    f"It is not in the trust list {trust}; if you trust this server, move "
                    f"{rejected / (fp + '.der')} into {trust}")
        return der

    # --- life cycle -------------------------------------------------------------
    async def connect(self) -> None:
        cfg = self.cfg
        der = await self._check_server_certificate()
        client = Client(cfg.endpoint, timeout=float(cfg.timeout), watchdog_intervall=float(cfg.liveness))
        client.session_timeout = cfg.session_seconds * 1000
        if cfg.username:
            client.set_user(cfg.username)
            client.set_password(cfg.password)
        if cfg.security.mode != "None":
            mode = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}[cfg.security.mode]
            await client.set_security(security_policies.SecurityPolicyBasic256Sha256,
                                      certificate=self._path(cfg.security.certificate),
                                      private_key=self._path(cfg.security.private_key),
                                      server_certificate=der, mode=mode)
        try:
            await client.connect()
        except ua.UaStatusCodeError as exc:
            if exc.code in (ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenInvalid,
                            ua.StatusCodes.BadIdentityTokenRejected):
                raise EntryError(f"{cfg.endpoint} refused the login of user {cfg.username!r}: {exc}") from None
            raise EntryNotReady(f"{cfg.endpoint}: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise EntryNotReady(f"cannot reach {cfg.endpoint}: {exc or type(exc).__name__}") from None
        self.client = client
        await self._resolve()
        if cfg.mode == "subscribe":
            await self.subscribe()

    async def _resolve(self) -> None:
        client = self.client
        ns = None
        if any(p.path for p in self.cfg.points):
            names = await client.get_namespace_array()
            if self.cfg.namespace:
                if self.cfg.namespace not in names:
                    raise EntryError(f"namespace {self.cfg.namespace!r} is not on {self.cfg.endpoint} "
                                     f"(it has: {', '.join(names)})")
                ns = names.index(self.cfg.namespace)
            else:
                ns = 2 if len(names) > 2 else 1
        self.nodes.clear()
        self.by_nodeid.clear()
        problems = []
        by_id = [p for p in self.cfg.points if p.node]
        # One request proves every node id exists (a round trip per node is minutes for 10,000 points).
        id_nodes = []
        for p in by_id:
            try:
                id_nodes.append(client.get_node(p.node))
            except (ValueError, ua.UaError) as exc:
                problems.append(f"point {p.name!r} ({p.node}): not a node id: {exc}")
                id_nodes.append(None)
        checkable = [(p, n) for p, n in zip(by_id, id_nodes) if n is not None]
        for i in range(0, len(checkable), 1000):
            chunk = checkable[i:i + 1000]
            results = await client.read_attributes([n for _, n in chunk], ua.AttributeIds.BrowseName)
            for (p, node), dv in zip(chunk, results):
                if dv.StatusCode is not None and not dv.StatusCode.is_good():
                    problems.append(f"point {p.name!r} ({p.node}): {dv.StatusCode.name}")
                    continue
                self.nodes[p.name] = node
                self.by_nodeid[node.nodeid.to_string()] = p.name
        for p in self.cfg.points:
            if p.node:
                continue
            try:
                parts = [s if ":" in s else f"{ns}:{s}" for s in p.path.strip("/").split("/")]
                node = await client.nodes.objects.get_child(parts)
            except (ua.UaStatusCodeError, ValueError) as exc:
                problems.append(f"point {p.name!r} ({p.path}): {exc}")
                continue
            self.nodes[p.name] = node
            self.by_nodeid[node.nodeid.to_string()] = p.name
        if problems:
            raise EntryError("nodes not found on the server: " + "; ".join(problems))

    async def subscribe(self) -> None:
        cfg = self.cfg
        if self.subscription is not None:
            try:
                await self.subscription.delete()
            except Exception:  # noqa: BLE001 - the old one may already be gone with its session
                pass
        self.subscription = await self.client.create_subscription(float(cfg.publishing_interval) * 1000, self,
                                                                  queue_maxsize=100_000)
        groups: dict[tuple, list] = {}
        for p in cfg.points:
            key = (p.deadband, p.queue_size, float(p.sampling_interval))
            groups.setdefault(key, []).append(self.nodes[p.name])
        for (deadband, queue, sampling), nodes in groups.items():
            mfilter = None
            if deadband is not None:
                mfilter = ua.DataChangeFilter()
                mfilter.Trigger = ua.DataChangeTrigger.StatusValue
                mfilter.DeadbandType = 1 if deadband.type == "abs" else 2
                mfilter.DeadbandValue = float(deadband.value)
            for i in range(0, len(nodes), 1000):   # keep each CreateMonitoredItems request a sane size
                await self.subscription._subscribe(nodes[i:i + 1000], ua.AttributeIds.Value, mfilter, queue,
                                                   sampling_interval=sampling * 1000)

    async def check(self) -> str | None:
        """Raise if the session is dead; return a reason if the subscription has silently stopped."""
        client = self.client
        if client is None:
            raise ConnectionError("not connected")
        check = getattr(client, "check_connection", None)
        if check is not None:
            result = check()
            if hasattr(result, "__await__"):   # a coroutine in asyncua 2.x
                await result
        await client.nodes.server_state.read_value()
        if self.cfg.mode != "subscribe" or not self.last_notified:
            return None
        # The server has a newer value than anything we were told about: the subscription stopped.
        slack = 2 * float(self.cfg.publishing_interval) + 2.0
        names = list(self.nodes)[:20]
        dvs = await client.read_attributes([self.nodes[n] for n in names], ua.AttributeIds.Value)
        for name, dv in zip(names, dvs):
            ts = dv.SourceTimestamp or dv.ServerTimestamp
            last = self.last_notified.get(name)
            if ts is None or last is None:
                continue
            if ts.timestamp() - last[1] > slack and dv.Value.Value != last[0]:
                return (f"point {name}: server has a value from {ts.timestamp() - last[1]:.1f} s after the last "
                        "notification, but none arrived")
        return None

    async def read_all(self) -> list[tuple[str, Any, float, int]]:
        names = list(self.nodes)
        dvs = await self.client.read_attributes([self.nodes[n] for n in names], ua.AttributeIds.Value)
        out = []
        for name, dv in zip(names, dvs):
            ts = dv.SourceTimestamp or dv.ServerTimestamp
            out.append((name, dv.Value.Value if dv.Value else None, ts.timestamp() if ts else time.time(),
                        quality_of(dv.StatusCode)))
        return out

    async def write(self, point: str, value: Any) -> str:
        node = self.nodes[point]
        vtype = await node.read_data_type_as_variant_type()
        try:
            await node.write_value(ua.DataValue(ua.Variant(value, vtype)))
        except ua.UaStatusCodeError as exc:
            return exc.code_as_name() if hasattr(exc, "code_as_name") else str(exc)
        return "Good"

    async def call(self, obj: str, method: str, args: list) -> list:
        parent = self.client.get_node(obj)
        # asyncua reads a plain string as a browse name ("2:Reset"); a node id must be a NodeId.
        method_id = ua.NodeId.from_string(method) if "=" in method else method
        result = await parent.call_method(method_id, *args)
        return result if isinstance(result, list) else [result]

    async def close(self) -> None:
        client, self.client = self.client, None
        self.subscription = None
        if client is not None:
            try:
                await client.disconnect()
            except Exception:  # noqa: BLE001 - the link is gone anyway
                pass
