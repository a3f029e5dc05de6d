"""Every example exchange in docs/websocket-api.md (```` ```json ws ```` blocks) is sent to a real site.

The examples are one admin session, numbered in the order they run: each ``→`` message is sent
as written, on one connection, in id order, and the actual answer must match the ``←`` lines: the
same ``type`` and ``success``, the same error ``code`` and message when it fails, and every key shown in the
example's result (or event) present in the real one with a value of the same JSON type (values
such as timestamps differ). A ``←`` event line waits for an event of the same kind on that
subscription.

The site is the one the examples talk about (core/sitegate/api/schema.py, EXAMPLE_SITE): a
simulator entry ``sim`` with devices ``sim.dev0`` and ``sim.dev1``, a ``history`` entry fed by a
route, an update handler ``sensors-update`` with simulated sensor nodes, every plugin from a
signed registry, where a newer simulator and a node firmware update are published while it runs.
"""

from __future__ import annotations

import io
import os
import json
import re
import shutil
from pathlib import Path
from typing import Any

import trio

from sitegate.api.messages import COMMANDS
from sitegate.api.schema import EXAMPLE_SITE, EXAMPLE_UPDATE, example_dead_letters
from sitegate.config import load_site
from sitegate.host import SiteHost
from sitegate.testing import api_client, wait_for, write_site

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "websocket-api.md"
FENCE = re.compile(r"^```json ws[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def exchanges(text: str) -> list[tuple[int, dict, list[dict]]]:
    """(line, message sent, expected answers) for every `→` line of the doc's ```json ws blocks."""
    out: list[tuple[int, dict, list[dict]]] = []
    for m in FENCE.finditer(text):
        first = text.count("\n", 0, m.start()) + 2
        for i, line in enumerate(m.group(1).splitlines()):
            where = f"{DOC.name}:{first + i}"
            arrow, _, body = line.partition(" ")
            assert arrow in ("→", "←"), f"{where}: a ws block holds only `→ {{...}}` and `← {{...}}` lines"
            msg = json.loads(body)
            if arrow == "→":
                out.append((first + i, msg, []))
            else:
                assert out and out[-1][0] >= first, f"{where}: an answer before any message in its block"
                out[-1][2].append(msg)
    return out


def json_type(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (str, dict, list)):
        return {bool: "boolean", type(None): "null", str: "string", dict: "object", list: "array"}[type(value)]
    assert isinstance(value, (int, float)), value
    return "number"


def shape_problems(expected: Any, actual: Any, path: str) -> list[str]:
    """Where `actual` lacks a key of `expected` or holds a value of another JSON type."""
    if json_type(expected) != json_type(actual):
        return [f"{path}: expected {json_type(expected)} like {json.dumps(expected)}, got {json.dumps(actual)[:300]}"]
    problems = []
    if isinstance(expected, dict):
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing (keys: {', '.join(actual)})")
            else:
                problems += shape_problems(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        if len(actual) < len(expected):
            problems.append(f"{path}: expected at least {len(expected)} items, got {json.dumps(actual)[:300]}")
        else:
            for i, value in enumerate(expected):
                problems += shape_problems(value, actual[i], f"{path}[{i}]")
    return problems


def answer_problems(expected: dict, actual: dict, where: str) -> list[str]:
    envelope = [k for k in ("id", "type", "success") if expected.get(k) != actual.get(k)]
    if envelope:
        return [f"{where}: {', '.join(envelope)} differ: expected {json.dumps(expected)}, got {json.dumps(actual)[:500]}"]
    if expected["type"] == "result" and not expected["success"]:
        if expected["error"]["code"] != actual["error"]["code"]:
            return [f"{where}: error code {actual['error']['code']!r} ({actual['error']['message']}), "
                    f"expected {expected['error']['code']!r}"]
        if expected["error"]["message"] != actual["error"]["message"]:   # messages are for people: exact
            return [f"{where}: error message {actual['error']['message']!r}, expected {expected['error']['message']!r}"]
        return []
    if expected["type"] == "result":
        return shape_problems(expected["result"], actual["result"], f"{where}: result")
    return shape_problems(expected, actual, where)


def signed_registry(folder: Path) -> dict[str, Any]:
    """A development registry of the first-party plugins (as `make registry` makes it) and its keys."""
    from sitegate.registry.devpublish import development_keys, devpublish
    assert not devpublish(REPO / "plugins", folder / "registry", out=io.StringIO())
    return development_keys(folder / "registry" / "keys")


def publish_new_simulator(folder: Path, keys: dict[str, Any], version: str) -> None:
    """What a maintainer does when a new version is out: the same plugin, another version, signed."""
    from sitegate.registry.artifact import build_artifact
    from sitegate.registry.repository import Repository
    from sitegate.registry.devpublish import DEV_EXPIRY_DAYS
    src = folder / "src" / "simulator"
    shutil.copytree(REPO / "plugins" / "simulator", src, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    manifest = json.loads((src / "manifest.json").read_text())
    (src / "manifest.json").write_text(json.dumps({**manifest, "version": version}, indent=2))
    online = {keys[r].keyid: keys[r] for r in ("snapshot", "timestamp")}
    Repository(folder / "registry", expiry_days=DEV_EXPIRY_DAYS).publish(build_artifact(src)[1], keys["publisher"], online)


def publish_firmware(folder: Path, keys: dict[str, Any]) -> str:
    from sitegate.registry.devpublish import DEV_EXPIRY_DAYS
    from sitegate.registry.repository import Repository
    from sitegate.registry.updates import publish_update
    from sitegate.updates import sign_update
    online = {keys[r].keyid: keys[r] for r in ("snapshot", "timestamp")}
    artifact = sign_update(b"node firmware " * 256, keys["publisher"]._signing_key, **EXAMPLE_UPDATE)
    return publish_update(Repository(folder / "registry", expiry_days=DEV_EXPIRY_DAYS), artifact,
                          keys["publisher"], online)


async def test_every_example_exchange_in_the_reference_runs_against_a_real_site(tmp_path):
    from examples.devices.fleet import Fleet
    from sitegate.registry.source import RegistrySource
    from sitegate.runner import SERVICES

    found = sorted(exchanges(DOC.read_text(encoding="utf-8")), key=lambda x: x[1]["id"])
    sent = [msg for _, msg, _ in found]
    ids = [m["id"] for m in sent]
    assert len(ids) == len(set(ids)), f"example ids must be unique (they say the order they run in): {ids}"
    assert {m["type"] for m in sent} >= set(COMMANDS), f"no example runs {set(COMMANDS) - {m['type'] for m in sent}}"

    keys = signed_registry(tmp_path)
    publisher = keys["publisher"]._signing_key.verify_key.encode().hex()
    path = write_site(tmp_path, EXAMPLE_SITE.replace("PUBLISHER_KEY", publisher), fast=False)
    loaded = load_site(path)
    pins = {e.domain: "" for e in loaded.site.entries} | dict(loaded.site.plugins)
    host = SiteHost(loaded, RegistrySource(tmp_path / "registry", tmp_path / ".sitegate", pins, actor="test"))
    problems: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        for start in SERVICES:
            await start(host, nursery)
        twins = host.services["twins"]
        handler = host.entry("sensors-update").data["update_handler"]
        fleet = Fleet(4, ("127.0.0.1", handler.port), [publisher], hardware=EXAMPLE_UPDATE["hardware_ids"])
        await nursery.start(fleet.run)
        await wait_for(lambda: len(handler.devices) == 4, 10, what="the sensor nodes")
        await wait_for(lambda: all(twins.twins.get(d) and twins.twins[d].online for d in ("sim.dev0", "sim.dev1")),
                       10, what="the simulated devices online")
        history = host.services["history"]
        await wait_for(lambda: history.stores, 10, what="the history entry")
        # The history rows the example shows are there: wait until the route has stored some.
        with trio.fail_after(20):
            while not (await history.query("sim.dev0", "temperature", 0, 2e9))["rows"]:
                await trio.sleep(0.1)
        await example_dead_letters(host)
        await trio.to_thread.run_sync(publish_new_simulator, tmp_path, keys, "1.1.0")
        await trio.to_thread.run_sync(publish_firmware, tmp_path, keys)

        async with api_client(host, role="admin") as ws:
            pending: list[tuple[int, dict, dict]] = []     # (line, message, expected event)
            for line, msg, answers in found:
                where = f"{DOC.name}:{line} {msg['type']}"
                if msg["type"] == "unsubscribe":   # a subscription's events come before its end
                    problems += await check_events(ws, [p for p in pending if p[2]["id"] == msg["subscription"]])
                    pending = [p for p in pending if p[2]["id"] != msg["subscription"]]
                await ws.send(msg)
                with trio.fail_after(60):
                    reply = await ws.reply(msg["id"], timeout=60)
                results = [a for a in answers if a.get("type") != "event"]
                assert len(results) == 1, f"{where}: one answer per message, got {results}"
                problems += answer_problems(results[0], reply, where)
                pending += [(line, msg, a) for a in answers if a.get("type") == "event"]
                DUMP.append({"sent": msg, "got": reply})
            problems += await check_events(ws, pending)
        await host.shutdown()
        nursery.cancel_scope.cancel()
    if os.environ.get("SITEGATE_DUMP_EXAMPLES"):   # what the site really answered, to write examples from
        Path(os.environ["SITEGATE_DUMP_EXAMPLES"]).write_text(json.dumps(DUMP, indent=1))
    assert not problems, "\n".join(problems)


DUMP: list[dict] = []


async def check_events(ws, pending: list[tuple[int, dict, dict]]) -> list[str]:
    """Each expected event: an event of the same kind arrives on its subscription, of the same shape."""
    problems = []
    for line, msg, event in pending:
        where = f"{DOC.name}:{line} {msg['type']} event"
        kind = event["event"].get("kind")
        got: dict = {}
        with trio.move_on_after(10):
            while got.get("kind") != kind:
                got = await ws.event(event["id"], timeout=10)
        DUMP.append({"event": got})
        if got.get("kind") != kind:
            problems.append(f"{where}: no {kind!r} event within 10 s")
        else:
            problems += shape_problems(event["event"], got, where)
    return problems
