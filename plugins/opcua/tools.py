"""Integrator tools for OPC UA: client certificates and browsing a server's address space.

Used by `sitegate opcua make-cert` and `sitegate opcua browse`; plain asyncio
functions plus synchronous wrappers, since a CLI has no trio loop to share.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from cryptography.x509.oid import ExtendedKeyUsageOID


def make_certificate(stem: Path, app_uri: str, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write <stem>.der and <stem>.pem (key): a self-signed application certificate for OPC UA."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    cert, key = stem.with_suffix(".der"), stem.with_suffix(".pem")
    # The private key is readable by its owner only, from its first byte: asyncua creates it with
    # the process umask (0644 typically), so the umask is narrowed while it writes (a CLI, one thread).
    umask = os.umask(0o077)
    try:
        asyncio.run(setup_self_signed_certificate(
            key, cert, app_uri, host, [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
            {"countryName": "XX", "organizationName": "sitegate", "commonName": app_uri}))
    finally:
        os.umask(umask)
    os.chmod(key, 0o600)      # a key made by an earlier version, too
    return cert, key


async def _browse(endpoint: str, node_id: str | None, depth: int, timeout: float) -> list[tuple[int, str, str, str]]:
    from asyncua import Client, ua

    from .config import SESSION_TIMEOUT
    rows: list[tuple[int, str, str, str]] = []
    client = Client(endpoint, timeout=timeout)
    client.session_timeout = SESSION_TIMEOUT * 1000     # not asyncua's hour, should the browse be killed
    async with client:
        start = client.get_node(node_id) if node_id else client.nodes.objects

        async def walk(node, level: int) -> None:
            for child in await node.get_children():
                name = (await child.read_browse_name()).to_string()
                cls = await child.read_node_class()
                rows.append((level, name, child.nodeid.to_string(), cls.name))
                if level + 1 < depth and cls in (ua.NodeClass.Object, ua.NodeClass.View):
                    await walk(child, level + 1)

        await walk(start, 0)
    return rows


def browse(endpoint: str, node_id: str | None = None, depth: int = 3, timeout: float = 4.0) -> list[tuple[int, str, str, str]]:
    """(depth, browse name, node id, node class) for the tree under `node_id` (default: Objects)."""
    return asyncio.run(_browse(endpoint, node_id, depth, timeout))
