"""The WebSocket API's messages as attrs classes: one per command, plus the server's replies.

The same classes validate incoming commands (through the core's cattrs
converter, so errors name the field) and generate the JSON Schema in
docs/websocket-api.schema.json (schema.py), so the reference cannot drift.
"""

from __future__ import annotations

import difflib

from typing import Any, Literal

import attrs

from ..errors import ConfigError
from ..structure import structure

ROLES = ("viewer", "operator", "admin")


def role_rank(role: str) -> int:
    return ROLES.index(role)


@attrs.frozen
class CommandSpec:
    name: str
    cls: type
    role: str
    doc: str
    example: dict[str, Any]          # the command's own fields in an example exchange
    example_result: Any
    example_event: dict[str, Any] | None = None   # for subscriptions: one event they push


COMMANDS: dict[str, CommandSpec] = {}


def command(name: str, *, role: str, example: dict[str, Any] | None = None, result: Any = None,
            event: dict[str, Any] | None = None):
    """Register an attrs class as the fields of command `name`, allowed from `role` up."""
    assert role in ROLES

    def wrap(cls: type) -> type:
        COMMANDS[name] = CommandSpec(name, cls, role, (cls.__doc__ or "").strip(), example or {}, result, event)
        return cls
    return wrap


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


# --- envelope -----------------------------------------------------------------------------------

@attrs.frozen
class Auth:
    """First message from the client after `auth_required`."""

    type: Literal["auth"] = attrs.field(metadata=_doc("Always `auth`."))
    access_token: str = attrs.field(metadata=_doc("A token from `sitegate token create`."))


@attrs.frozen
class Envelope:
    """Every command after authentication: an id (strictly increasing per connection) and a type."""

    id: int = attrs.field(metadata=_doc("Chosen by the client; each must be larger than the previous one."))
    type: str = attrs.field(metadata=_doc("The command's name."))


# --- commands -----------------------------------------------------------------------------------

@command("ping", role="viewer", result=None)
@attrs.frozen
class Ping:
    """Answered with `{"id": N, "type": "pong"}` (not a `result`), as Home Assistant does."""


@command("get_site", role="viewer", result={"site": "plant-a/line-3", "version": "0.1.0", "uptime": 60.0, "entries": 3,
                                            "devices": 2, "readings_in": 600, "role": "admin",
                                            "sinks": {"history": {"state": "attached"}}})
@attrs.frozen
class GetSite:
    """The site: name, uptime, counters, sink connectivity and WAL depth when the data plane runs."""


@command("get_entries", role="viewer", result=[
    {"id": "sim", "domain": "simulator", "state": "loaded", "recoverable": True, "reason": "", "retries": 0,
     "version": "1.0.0", "counters": {"batches_out": 300, "readings_out": 600, "task_failures": 0}},
    {"id": "history", "domain": "history", "state": "loaded", "recoverable": True, "reason": "", "retries": 0},
    {"id": "sensors-update", "domain": "mqttsn_update", "state": "loaded", "recoverable": True, "reason": "",
     "retries": 0}])
@attrs.frozen
class GetEntries:
    """Every entry with its state, whether the state is recoverable, the reason, retries and counters."""


@command("reload_entry", role="operator", example={"entry_id": "sim"},
         result={"id": "sim", "state": "loaded", "recoverable": True, "reason": ""})
@attrs.frozen
class ReloadEntry:
    """Unload and set up an entry again; the result holds its state after the first setup attempt."""

    entry_id: str = attrs.field(metadata=_doc("Id of the entry."))


@command("unload_entry", role="operator", example={"entry_id": "sim"},
         result={"id": "sim", "state": "not_loaded", "recoverable": True, "reason": ""})
@attrs.frozen
class UnloadEntry:
    """Unload an entry (its tasks are cancelled, cleanups run); it stays in the site until reloaded."""

    entry_id: str = attrs.field(metadata=_doc("Id of the entry."))


@command("setup_entry", role="operator", example={"entry_id": "sim"},
         result={"id": "sim", "state": "loaded", "recoverable": True, "reason": ""})
@attrs.frozen
class SetupEntry:
    """Set up an entry that is not loaded (after `unload_entry` or an error). Refused if it is loaded."""

    entry_id: str = attrs.field(metadata=_doc("Id of the entry."))


@command("list_devices", role="viewer", example={"entry_id": "sim"},
         result=[{"id": "sim.dev0", "entry": "sim", "online": True, "fw_version": "1.0.0", "desired_config": None,
                  "drift": False, "last_seen": 1700000000.0, "interval": 0.2, "alarms": []},
                 {"id": "sim.dev1", "entry": "sim", "online": True, "fw_version": "1.0.0", "desired_config": None,
                  "drift": False, "last_seen": 1700000000.0, "interval": 0.2, "alarms": []}])
@attrs.frozen
class ListDevices:
    """Device twins: identity, entry, versions, config drift, last seen, online, active alarms."""

    entry_id: str | None = attrs.field(default=None, metadata=_doc("Only devices of this entry."))


@command("get_device", role="viewer", example={"device_id": "sim.dev0"},
         result={"id": "sim.dev0", "online": True,
                 "points": {"temperature": {"value": 21.5, "ts": 1700000000.0, "quality": 0, "unit": "degC",
                                            "writable": True}}})
@attrs.frozen
class GetDevice:
    """One twin with its points' latest value, quality and timestamp."""

    device_id: str = attrs.field(metadata=_doc("Site-wide device id (`<entry>` or `<entry>.<device>`)."))


@command("device_command", role="operator",
         example={"device_id": "sim.dev0", "action": "write", "point": "temperature", "value": 42, "timeout": 5},
         result={"status": "ack", "detail": "", "value": 42})
@attrs.frozen
class DeviceCommand:
    """Send a command to the adapter owning the device. Ends in `ack`, or an error `nack`/`timeout`;
    every command is audited (who, what, result)."""

    device_id: str = attrs.field(metadata=_doc("The device."))
    action: str = attrs.field(default="write", metadata=_doc("Adapter-defined; `write` sets `point` to `value`."))
    point: str | None = attrs.field(default=None, metadata=_doc("The point, for `write`."))
    value: Any = attrs.field(default=None, metadata=_doc("The value to write."))
    args: dict[str, Any] = attrs.field(factory=dict, metadata=_doc("Further adapter-defined arguments."))
    timeout: float = attrs.field(default=5.0, metadata=_doc("Seconds to wait for the device's answer (max 60)."))

    def __attrs_post_init__(self) -> None:
        if not 0 < self.timeout <= 60:
            raise ValueError(f"timeout: expected 0 < timeout <= 60 seconds, got {self.timeout}")


@command("set_desired_config", role="admin", example={"device_id": "sim.dev0", "version": "7"},
         result={"desired_config": "7", "reported_config": None, "drift": True})
@attrs.frozen
class SetDesiredConfig:
    """Record the config version a device should run; the twin shows drift until it reports it."""

    device_id: str = attrs.field(metadata=_doc("The device."))
    version: str = attrs.field(metadata=_doc("The desired config version."))


@command("subscribe_readings", role="viewer",
         example={"devices": ["sim.*"], "points": ["temperature"], "max_rate": 5},
         result=None, event={"kind": "readings", "readings": {
             "sim.dev0": {"temperature": [21.53, 1700000000.25, 0]},
             "sim.dev1": {"temperature": [19.87, 1700000000.25, 0]}}})
@attrs.frozen
class SubscribeReadings:
    """Live readings matching the globs. The first event holds the newest value of every matching
    point; then at most `max_rate` event messages per second, each with the latest value of every
    matching point that changed since the previous message (coalesced).
    Events: `{"id": N, "type": "event", "event": {"kind": "readings", "readings": {device: {point:
    [value, ts, quality], ...}, ...}}}` (ts in Unix seconds to the millisecond; quality 0 is good)."""

    devices: list[str] = attrs.field(factory=lambda: ["*"], metadata=_doc("Glob(s) on device ids."))
    points: list[str] = attrs.field(factory=lambda: ["*"], metadata=_doc("Glob(s) on point names."))
    max_rate: float = attrs.field(default=5.0, metadata=_doc("Most messages per second (0.1 to 50)."))

    def __attrs_post_init__(self) -> None:
        if not 0.1 <= self.max_rate <= 50:
            raise ValueError(f"max_rate: expected 0.1 to 50 messages per second, got {self.max_rate}")


@command("subscribe_events", role="viewer", example={"kinds": ["entry.state", "alert", "device.*"]}, result=None,
         event={"kind": "entry.state", "source": "sim", "device": None, "point": None, "severity": "info", "message": "",
                "data": {"entry": "sim", "domain": "simulator", "from": "setup_in_progress", "state": "loaded",
                         "recoverable": True, "reason": ""}, "ts": 1700000000.0})
@attrs.frozen
class SubscribeEvents:
    """Site events whose kind matches a glob: `entry.state`, `alert`, `device.online`, `device.offline`,
    `command`, `sink.*`, `plugin.*`, `rollout.*`, ... Events: `{"id": N, "type": "event", "event":
    {"kind", "source", "device", "point", "severity", "message", "data", "ts"}}`."""

    kinds: list[str] = attrs.field(factory=lambda: ["*"], metadata=_doc("Glob(s) on event kinds."))


@command("unsubscribe", role="viewer", example={"subscription": 7}, result=None)
@attrs.frozen
class Unsubscribe:
    """End a subscription made by this connection."""

    subscription: int = attrs.field(metadata=_doc("The id of the subscribe command."))


@command("history", role="viewer",
         example={"device_id": "sim.dev0", "point": "temperature"},
         result={"entry": "history", "device_id": "sim.dev0", "point": "temperature", "start": 1699996400.0,
                 "end": 1700000000.0, "rows": [{"ts": 1699999999.8, "value": 21.53, "quality": 0},
                                               {"ts": 1700000000.0, "value": 21.49, "quality": 0}]})
@attrs.frozen
class History:
    """Past readings from the history sink (`not_found` when the site has none)."""

    device_id: str = attrs.field(metadata=_doc("The device."))
    point: str = attrs.field(metadata=_doc("The point."))
    start: float | None = attrs.field(default=None, metadata=_doc("Unix seconds; default one hour ago."))
    end: float | None = attrs.field(default=None, metadata=_doc("Unix seconds; default now."))
    resolution: float | None = attrs.field(default=None, metadata=_doc("Seconds per aggregated row; raw if absent."))
    entry_id: str | None = attrs.field(default=None, metadata=_doc("Which history entry (default: the first)."))


@command("diagnostics", role="operator", example={"entry_id": "sim"}, result={"site": "plant-a/line-3", "version": "0.1.0", "generated_at": 1700000000.0,
                 "entries": {"sim": {"id": "sim", "state": "loaded", "diagnostics": {"devices": ["sim.dev0", "sim.dev1"]}}}})
@attrs.frozen
class Diagnostics:
    """Support bundle: site, entries with their own diagnostics, twins, API counters. Secret values
    are replaced by `**********`."""

    entry_id: str | None = attrs.field(default=None, metadata=_doc("Only this entry."))


@command("list_plugins", role="viewer", result=[{"domain": "history", "version": "1.0.0", "kinds": ["sink"], "verified": True, "entries": ["history"]},
                 {"domain": "mqttsn_update", "version": "1.0.0", "kinds": ["update_handler"], "verified": True,
                  "entries": ["sensors-update"]},
                 {"domain": "simulator", "version": "1.0.0", "kinds": ["adapter"], "verified": True, "entries": ["sim"]}])
@attrs.frozen
class ListPlugins:
    """Integrations loaded by the site, with version and kinds; the installed and previous
    versions when plugins come from the signed registry."""


@command("upgrade_plugin", role="admin", example={"domain": "simulator", "spec": ">=1.1"},
         result={"domain": "simulator", "result": "upgraded", "old_version": "1.0.0", "new_version": "1.1.0",
                 "detail": "1 entry healthy after 0.4 s", "entries": ["sim"]})
@attrs.frozen
class UpgradePlugin:
    """Upgrade an integration live from the signed registry: its entries are reloaded on the new
    version and health-checked; an unhealthy version is rolled back by itself (`result` says
    `upgraded`, `rolled_back` or `refused`). Progress arrives as `plugin.upgrade` events."""

    domain: str = attrs.field(metadata=_doc("The integration."))
    spec: str = attrs.field(default="", metadata=_doc("Version range (default: the newest signed version)."))


@command("rollback_plugin", role="admin", example={"domain": "simulator"},
         result={"domain": "simulator", "result": "rolled_back", "old_version": "1.1.0", "new_version": "1.0.0",
                 "detail": "operator rollback", "entries": ["sim"]})
@attrs.frozen
class RollbackPlugin:
    """Go back to the previously installed version of an integration (one step)."""

    domain: str = attrs.field(metadata=_doc("The integration."))


# --- dead letters (the dead-letter table of the site's WAL, as `sitegate dlq`) ----------------------

_UNTRIED = ("entry 'sim' (integration 'simulator') cannot decode its dead letters again; `dlq show` them, "
            "`dlq purge` them")


@command("list_dead_letters", role="viewer", example={"limit": 50},
         result={"dead_letters": [
             {"id": 1, "kind": "sink", "sink": "history", "entry": "history", "priority": "normal",
              "device": "sim.dev0", "seq": 0, "readings": 1, "failed_at": 1700000000.0,
              "error": "temperature: 1e+09 degC is out of range"},
             {"id": 2, "kind": "ingress", "entry": "sim", "source": "sim/dev0/state", "device": "sim.dev0",
              "bytes": 22, "failed_at": 1700000000.0, "error": "temperature: not a number: 'n/a'", "attempts": 0,
              "replay_requested": None, "note": None}],
             "more": False, "stored": {"sink": 1, "ingress": 1}})
@attrs.frozen
class ListDeadLetters:
    """Dead letters, oldest first, without their payloads: readings a sink refused permanently
    (`kind` `sink`: the sink, device, sequence number, readings, error) and payloads an adapter could
    not decode (`ingress`: the entry, where it came from, its size, the error, replay attempts and
    notes). `more` says whether further ones follow (ask again with `after_id`), `stored` counts
    the whole table by kind. `dlq.*` events say when to ask again."""

    kind: Literal["sink", "ingress"] | None = attrs.field(default=None, metadata=_doc("Only this kind."))
    entry_id: str | None = attrs.field(default=None, metadata=_doc(
        "Only dead letters of this entry (the sink, or the adapter of ingress ones)."))
    after_id: int = attrs.field(default=0, metadata=_doc("Only ids above this one (the last id of the previous page)."))
    limit: int = attrs.field(default=100, metadata=_doc("At most this many (1 to 1,000)."))

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.limit <= 1000:
            raise ValueError(f"limit: expected 1 to 1000 dead letters, got {self.limit}")


@command("get_dead_letter", role="operator", example={"dead_letter_id": 2},
         result={"id": 2, "kind": "ingress", "entry": "sim", "source": "sim/dev0/state", "device": "sim.dev0",
                 "context": None, "error": "temperature: not a number: 'n/a'", "failed_at": 1700000000.0,
                 "attempts": 0, "replay_requested": None, "note": None, "bytes": 22,
                 "payload_text": "{\"temperature\": \"n/a\"}", "payload_hex": "7b2274656d7065726174757265223a20226e2f61227d"})
@attrs.frozen
class GetDeadLetter:
    """One dead letter with what it holds: an ingress one's payload (`payload_text` when it is
    UTF-8, else null, and `payload_hex`) and `context`; a sink one's readings, each with its
    msgId, point, value, ts and quality. Operators and admins only: a payload is whatever the
    device sent, and may hold restricted points or personal data the site cannot see."""

    dead_letter_id: int = attrs.field(metadata=_doc("The dead letter's id (from `list_dead_letters`)."))


@command("replay_dead_letters", role="operator", example={"ids": [1, 2]},
         result={"sink": {"replayed": 1, "readings": 1},
                 "ingress": {"asked": 1, "decoded": [], "failed": [], "untried": [{"id": 2, "note": _UNTRIED}],
                             "pending": []}})
@attrs.frozen
class ReplayDeadLetters:
    """Replay dead letters as `sitegate dlq replay` does. Sink ones go back to the WAL for their
    sink with their sequence numbers (the same msgIds) and leave the table. Ingress ones are handed
    to the entry that stored them, to decode again with its current mapping: `decoded` ones are
    deleted once their readings are committed, `failed` ones stay with the new error, `untried`
    ones (entry not running, or unable to decode again) stay with a note, `pending` ones (their
    entry is being set up) are replayed when it is. Say which: `ids`, `all`, `entry_id` or `kind`
    (they combine). A `dlq.replayed` event follows."""

    ids: list[int] = attrs.field(factory=list, metadata=_doc("These dead letters."))
    all: bool = attrs.field(default=False, metadata=_doc("Every dead letter (of `entry_id` or `kind`, if given)."))
    entry_id: str | None = attrs.field(default=None, metadata=_doc("Only dead letters of this entry."))
    kind: Literal["sink", "ingress"] | None = attrs.field(default=None, metadata=_doc("Only this kind."))


@command("purge_dead_letters", role="admin", example={"kind": "ingress"},
         result={"purged": {"sink": 0, "ingress": 1}, "stored": {"sink": 0, "ingress": 0}})
@attrs.frozen
class PurgeDeadLetters:
    """Delete dead letters for good, as `sitegate dlq purge` does (admins only: nothing brings them
    back). Say which: `ids`, `all`, `entry_id` or `kind` (they combine). A `dlq.purged` event follows."""

    ids: list[int] = attrs.field(factory=list, metadata=_doc("These dead letters."))
    all: bool = attrs.field(default=False, metadata=_doc("Every dead letter (of `entry_id` or `kind`, if given)."))
    entry_id: str | None = attrs.field(default=None, metadata=_doc("Only dead letters of this entry."))
    kind: Literal["sink", "ingress"] | None = attrs.field(default=None, metadata=_doc("Only this kind."))


# --- what the server sends ----------------------------------------------------------------------

@attrs.frozen
class ErrorInfo:
    code: Literal["invalid_format", "unknown_command", "id_reuse", "not_found", "unauthorized", "timeout",
                  "nack", "not_allowed", "failed"] = attrs.field(metadata=_doc("Machine-readable reason."))
    message: str = attrs.field(metadata=_doc("What went wrong and where, for people."))


@attrs.frozen
class AuthRequired:
    type: Literal["auth_required"] = attrs.field(metadata=_doc("Sent on connect."))
    sitegate_version: str = attrs.field(metadata=_doc("Server version."))


@attrs.frozen
class AuthOk:
    type: Literal["auth_ok"] = attrs.field(metadata=_doc("Authenticated; commands may follow."))
    sitegate_version: str = attrs.field(metadata=_doc("Server version."))
    role: Literal["viewer", "operator", "admin"] = attrs.field(metadata=_doc("The token's role."))


@attrs.frozen
class AuthInvalid:
    type: Literal["auth_invalid"] = attrs.field(metadata=_doc("Then the server closes the connection."))
    message: str = attrs.field(metadata=_doc("Why (unknown token, revoked, rate-limited)."))


@attrs.frozen
class Result:
    id: int | None = attrs.field(metadata=_doc("The command's id (null if it could not be read)."))
    type: Literal["result"] = attrs.field(metadata=_doc("A command's answer."))
    success: bool = attrs.field(metadata=_doc("True with `result`, false with `error`."))
    result: Any = attrs.field(default=None, metadata=_doc("The command's result."))
    error: ErrorInfo | None = attrs.field(default=None, metadata=_doc("Why it failed."))


@attrs.frozen
class EventMessage:
    id: int = attrs.field(metadata=_doc("The subscription (the id of the subscribe command)."))
    type: Literal["event"] = attrs.field(metadata=_doc("Pushed for a subscription."))
    event: dict[str, Any] = attrs.field(metadata=_doc("The event; `kind` says which."))


@attrs.frozen
class Pong:
    id: int = attrs.field(metadata=_doc("The ping's id."))
    type: Literal["pong"] = attrs.field(metadata=_doc("Answer to ping."))


SERVER_MESSAGES = {"auth_required": AuthRequired, "auth_ok": AuthOk, "auth_invalid": AuthInvalid,
                   "result": Result, "event": EventMessage, "pong": Pong}


class BadCommand(Exception):
    """A command that cannot be read; `code` is the API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def parse_command(msg: dict[str, Any]) -> tuple[CommandSpec, Any]:
    """The command's spec and its validated fields; BadCommand says what is wrong and where."""
    kind = msg.get("type")
    spec = COMMANDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        close = difflib.get_close_matches(str(kind), COMMANDS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BadCommand("unknown_command", f"unknown command type {kind!r}; {hint}known: {', '.join(sorted(COMMANDS))}")
    fields = {k: v for k, v in msg.items() if k not in ("id", "type")}
    try:
        return spec, structure(fields, spec.cls, path=kind)
    except ConfigError as exc:
        raise BadCommand("invalid_format", "; ".join(str(i) for i in exc.issues)) from None


@command("rollout_status", role="viewer", example={"rollout_id": "node-fw-2.1.0"},
         result=[{"id": "node-fw-2.1.0", "entry": "sensors-update", "update": "node-fw 2.1.0", "kind": "firmware",
                  "state": "running", "reason": "", "wave": 0, "waves": 4, "total": 200, "executed": 0,
                  "succeeded": 0, "failed": 0, "rolled_back": 0, "in_progress": 2, "pending": 198,
                  "failed_devices": []}])
@attrs.frozen
class RolloutStatus:
    """Rollouts of firmware or config updates (all, or one): state, wave, counts and failed devices.
    Progress arrives as `rollout.*` events (subscribe_events)."""

    rollout_id: str | None = attrs.field(default=None, metadata=_doc("One rollout (default: all)."))


@command("rollout_start", role="admin",
         example={"entry_id": "sensors-update", "target": "plugins/sitegate/update-node-fw-2.1.0.bin",
                  "policy": {"waves": [1, 10, 50, 100], "soak": 600}, "rollout_id": "node-fw-2.1.0"},
         result={"rollout_id": "node-fw-2.1.0"})
@attrs.frozen
class RolloutStart:
    """Start a rollout of a signed update from the site's registry through an update-handler entry.
    The update is verified (TUF) before anything is sent; waves, canary, soak and abort criteria
    come from `policy` (docs/updates.md), with the defaults there."""

    entry_id: str = attrs.field(metadata=_doc("The update-handler entry that talks to the devices."))
    target: str = attrs.field(metadata=_doc("The update in the signed registry: plugins/PUBLISHER/update-NAME-VERSION.bin."))
    policy: dict[str, Any] = attrs.field(factory=dict, metadata=_doc("RolloutPolicy fields (waves, soak, device_timeout, max_concurrent, abort, ...)."))
    devices: list[str] | None = attrs.field(default=None, metadata=_doc("Only these devices (default: every device of the entry)."))
    hardware: list[str] | None = attrs.field(default=None, metadata=_doc("Only devices of these hardware ids."))
    rollout_id: str | None = attrs.field(default=None, metadata=_doc("Id to give the rollout (default: from the update's name and version)."))


@command("rollout_pause", role="admin", example={"rollout_id": "node-fw-2.1.0"}, result={"state": "paused"})
@attrs.frozen
class RolloutPause:
    """Pause a rollout: devices in progress finish; no new device starts."""

    rollout_id: str = attrs.field(metadata=_doc("The rollout."))


@command("rollout_resume", role="admin", example={"rollout_id": "node-fw-2.1.0"}, result={"state": "running"})
@attrs.frozen
class RolloutResume:
    """Resume a paused (or aborted-and-reviewed) rollout; failures are counted again from here."""

    rollout_id: str = attrs.field(metadata=_doc("The rollout."))


@command("rollout_abort", role="admin", example={"rollout_id": "node-fw-2.1.0"}, result={"state": "aborted"})
@attrs.frozen
class RolloutAbort:
    """Abort a rollout: it stops and every failed device is rolled back."""

    rollout_id: str = attrs.field(metadata=_doc("The rollout."))
