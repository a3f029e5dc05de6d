"""JSON Schema and the command reference of the WebSocket API, generated from messages.py.

`python -m sitegate.api.schema --write` rewrites docs/websocket-api.schema.json
and the generated part of docs/websocket-api.md; a test checks both are current,
so the reference and the classes that validate commands cannot drift.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import attrs

from .messages import COMMANDS, SERVER_MESSAGES, Auth, ErrorInfo


def type_schema(tp: Any) -> dict[str, Any]:
    """JSON Schema of one Python annotation (the subset the messages use)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return {}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        subs = [type_schema(a) for a in args if a is not type(None)]
        nullable = type(None) in args
        out = subs[0] if len(subs) == 1 else {"anyOf": subs}
        if nullable:
            out = {"anyOf": [out, {"type": "null"}]} if "type" not in out or isinstance(out["type"], list) \
                else {**out, "type": [out["type"], "null"]}
        return out
    if origin in (list, tuple):
        return {"type": "array", "items": type_schema(args[0]) if args else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": type_schema(args[1]) if len(args) > 1 else {}}
    if attrs.has(tp):
        return {"$ref": f"#/$defs/{tp.__name__}"}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    if tp in simple:
        return {"type": simple[tp]}
    raise TypeError(f"no JSON Schema for annotation {tp!r}")


def class_schema(cls: type, *, extra: dict[str, Any] | None = None, doc: str | None = None) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = dict(extra or {})
    required = [k for k, v in (extra or {}).items() if v.pop("_required", False)]
    for a in attrs.fields(cls):
        prop = type_schema(hints[a.name])
        if a.metadata.get("doc"):
            prop["description"] = a.metadata["doc"]
        if a.default is attrs.NOTHING:
            required.append(a.name)
        elif isinstance(a.default, attrs.Factory):   # type: ignore[arg-type]
            prop["default"] = a.default.factory()
        elif isinstance(a.default, (int, float, str, bool, type(None))):
            prop["default"] = a.default
        props[a.name] = prop
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    text = doc if doc is not None else (cls.__doc__ or "").strip()
    if text:
        out["description"] = " ".join(text.split())
    return out


def api_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {"ErrorInfo": class_schema(ErrorInfo), "Auth": class_schema(Auth)}
    commands = []
    for name, spec in sorted(COMMANDS.items()):
        envelope = {
            "id": {"type": "integer", "description": "Strictly increasing per connection.", "_required": True},
            "type": {"const": name, "_required": True},
        }
        schema = class_schema(spec.cls, extra=envelope, doc=spec.doc)
        schema["x-role"] = spec.role
        defs[f"command.{name}"] = schema
        commands.append({"$ref": f"#/$defs/command.{name}"})
    server = []
    for name, cls in SERVER_MESSAGES.items():
        defs[f"server.{name}"] = class_schema(cls)
        server.append({"$ref": f"#/$defs/server.{name}"})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sitegate.example/websocket-api.schema.json",
        "title": "sitegate WebSocket API",
        "description": "Messages of the sitegate WebSocket API (generated from sitegate.api.messages; "
                       "see docs/websocket-api.md).",
        "oneOf": [{"$ref": "#/$defs/client"}, {"$ref": "#/$defs/server"}],
        "$defs": {**defs, "client": {"oneOf": [{"$ref": "#/$defs/Auth"}, *commands]},
                  "server": {"oneOf": server}},
    }


def render() -> str:
    return json.dumps(api_schema(), indent=2, sort_keys=False) + "\n"


BEGIN = "<!-- BEGIN GENERATED: python -m sitegate.api.schema --write -->"
END = "<!-- END GENERATED -->"


def _type_text(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_type_text(s) for s in schema["anyOf"])
    t = schema.get("type")
    if isinstance(t, list):
        return " or ".join(t)
    if t == "array":
        return f"array of {_type_text(schema.get('items', {}))}"
    if t == "object":
        return "object"
    return t or "any"


# The examples of the reference are one admin session on one site, and
# tests/docs/test_websocket_api_examples.py runs them so: each `→` message as written, in the
# order of their ids, against EXAMPLE_SITE (with EXAMPLE_UPDATE published in its registry), and
# checks every answer against the `←` lines. So an example must succeed, as written, at its place
# in this order: state-changing commands come after the reads that show the state they change.
EXAMPLE_ORDER = ("ping", "get_site", "get_entries", "list_plugins", "list_devices", "get_device",
                 "subscribe_readings", "subscribe_events", "unsubscribe", "device_command", "set_desired_config",
                 "history", "diagnostics", "list_dead_letters", "get_dead_letter", "replay_dead_letters",
                 "purge_dead_letters", "unload_entry", "setup_entry", "reload_entry", "upgrade_plugin",
                 "rollback_plugin", "rollout_start", "rollout_status", "rollout_pause", "rollout_resume",
                 "rollout_abort")

EXAMPLE_SITE = """\
site: plant-a/line-3
entries:
  - id: sim
    domain: simulator
    config:
      devices: 2
      interval: 200ms
      points: [{name: temperature, shape: sine, amplitude: 4, offset: 21, period: 60, unit: degC}]
  - {id: history, domain: history}
  - id: sensors-update
    domain: mqttsn_update
    config: {port: 0, trusted_keys: [PUBLISHER_KEY]}
routes:
  - {name: to-history, from: ["sim.*/*"], to: [history]}
"""



async def example_dead_letters(host) -> None:
    """The dead letters the dead-letter examples show, made the way a running site makes them: the
    history sink refuses a reading for good (id 1), the simulator's entry gets a payload it
    cannot decode (id 2)."""
    import time

    from ..model import Batch
    from ..plugins import SinkError
    plane = host.services["dataplane"]
    reading = Batch("sim.dev0", ["temperature"], [1e9], [time.time()], None, "sim", 0)
    plane.deliveries["history"]._dead_letter(1, reading, SinkError("temperature: 1e+09 degC is out of range",
                                                                   permanent=True))
    sim = host.entry("sim")
    sim.dead_letter(b'{"temperature": "n/a"}', source="sim/dev0/state", device="sim.dev0",
                    error="temperature: not a number: 'n/a'")
    await sim.dead_letters_committed()


# The firmware update the rollout examples roll out, signed by the registry's publisher.
EXAMPLE_UPDATE = {"name": "node-fw", "version": "2.1.0", "release_counter": 2, "hardware_ids": ["th-v1"]}


def example_id(name: str) -> int:
    return EXAMPLE_ORDER.index(name) + 1


def render_markdown() -> str:
    """The command reference: per command its role, fields and an example exchange."""
    assert sorted(EXAMPLE_ORDER) == sorted(COMMANDS), "every command has its place in EXAMPLE_ORDER"
    out = [BEGIN, ""]
    for name, spec in sorted(COMMANDS.items()):
        schema = class_schema(spec.cls)
        out += [f"### `{name}`", "", f"Role: **{spec.role}** or above. " + " ".join(spec.doc.split()), ""]
        props = schema["properties"]
        if props:
            out += ["| field | type | default | meaning |", "|---|---|---|---|"]
            required = set(schema.get("required", []))
            for field, prop in props.items():
                default = "required" if field in required else f"`{json.dumps(prop.get('default'))}`"
                out.append(f"| `{field}` | {_type_text(prop)} | {default} | {prop.get('description', '')} |")
            out.append("")
        else:
            out += ["No fields besides `id` and `type`.", ""]
        mid = example_id(name)
        request = {"id": mid, "type": name, **spec.example}
        if name == "ping":
            reply = {"id": mid, "type": "pong"}
        else:
            reply = {"id": mid, "type": "result", "success": True, "result": spec.example_result}
        lines = ["→ " + json.dumps(request), "← " + json.dumps(reply)]
        if spec.example_event is not None:
            lines.append("← " + json.dumps({"id": mid, "type": "event", "event": spec.example_event}))
        out += ["```json ws", *lines, "```", ""]
    out.append(END)
    return "\n".join(out)


def write(docs: Path) -> None:
    (docs / "websocket-api.schema.json").write_text(render(), encoding="utf-8")
    md = docs / "websocket-api.md"
    text = md.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    md.write_text(text[:start] + render_markdown() + text[end:], encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] == ["--write"]:
        write(Path(__file__).resolve().parents[3] / "docs")
    else:
        sys.stdout.write(render())
