"""The rollout engine: an update to many devices in waves, stopping on its own when too many fail.

Modelled on AWS IoT Jobs: a canary wave covering every hardware id, then waves
by percentage, a soak after each, a timeout per device, a bound on concurrent
devices, abort criteria. An abort pauses the rollout and rolls the failed devices
back; only an operator continues it. State lives in store.py, written before each
step, so a restarted gateway picks up exactly where it stopped. Per-device progress
is written off the trio thread (store.StateWriter) and awaited before the step it
records; changes of a rollout's state are written at once, on the trio thread, so an
operator's request judged against the state never races a queued write.

Twins: each device is shown by the twin `handler.twin_id(device)` (default
`<entry id>.<device>`); a config rollout sets that twin's desired config to the
artifact's version when the device's step starts (`twins` gives the registry).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
import uuid
from typing import Any, Callable, Mapping

import nacl.signing
import trio

from ..model import Event, Severity
from .artifact import UpdateArtifact, verify_envelope
from .errors import UpdateError, UpdateFailed, UpdateRefused
from .policy import RolloutPolicy, plan_waves
from .store import RolloutStore, StateWriter

log = logging.getLogger(__name__)


class RolloutEngine:
    """Drives every rollout in a store. `handler_for(entry_id)` gives the update handler of an entry (or None)."""

    def __init__(self, store: RolloutStore, handler_for: Callable[[str], Any], *,
                 emit: Callable[[Event], None] | None = None,
                 trusted: Mapping[str, nacl.signing.VerifyKey] | None = None, poll: float = 0.5,
                 twins: Callable[[], Any] | None = None):
        self.store = store
        self.handler_for = handler_for
        self.twins = twins or (lambda: None)   # the device registry (twins.Twins) when the site runs one
        self._emit = emit or (lambda event: None)
        self.trusted = trusted
        self.poll = poll   # how often operator requests made by another process (the CLI) are picked up
        self._active: dict[str, trio.CancelScope] = {}
        self._entry: dict[str, str] = {}       # rollout id -> its entry (read once)
        self._states: dict[str, str] = {}
        store.changed = self._states.__setitem__   # every state the engine writes updates the cache
        self.writer = StateWriter(store)
        self._wake = trio.Event()

    # --- what operators do (CLI, WebSocket API) ------------------------------------------
    def start(self, entry: str, artifact: UpdateArtifact, *, policy: RolloutPolicy | None = None,
              devices: list[str] | None = None, hardware: list[str] | None = None,
              rollout_id: str | None = None) -> str:
        """Record a new rollout; the engine plans and starts it at once if it runs. Returns its id."""
        return create_rollout(self.store, entry, artifact, policy=policy, devices=devices, hardware=hardware,
                              rollout_id=rollout_id, trusted=self.trusted, wake=self.wake)

    def pause(self, rollout_id: str) -> str:
        return self._request(rollout_id, "pause")

    def resume(self, rollout_id: str) -> str:
        return self._request(rollout_id, "resume")

    def abort(self, rollout_id: str) -> str:
        return self._request(rollout_id, "abort")

    def _request(self, rollout_id: str, verb: str) -> str:
        state = self.store.request(rollout_id, verb)
        self._states[rollout_id] = state
        self._event(f"rollout.{'aborted' if verb == 'abort' else verb + 'd'}", rollout_id,
                    f"{rollout_id}: {verb} by {self.store.actor}", Severity.WARNING if verb == "abort" else Severity.INFO)
        self.wake()
        return state

    def status(self, rollout_id: str | None = None) -> list[dict[str, Any]]:
        rows = [self.store.get(rollout_id)] if rollout_id else self.store.list()
        return [describe(self.store, r) for r in rows if r]

    def wake(self) -> None:
        self._wake.set()

    # --- running --------------------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        # One engine per state folder: two would drive the same devices twice.
        lock = os.open(self.store.dir / "updates.lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise RuntimeError(f"{self.store.dir}: another rollout engine already runs on this state folder") from None
        try:
            await self._run(task_status)
        finally:
            os.close(lock)   # also released by the kernel when the process dies (SIGKILL)

    async def _run(self, task_status) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.writer.run)
            task_status.started(self)
            seen: dict[str, str] = {r["id"]: r["state"] for r in self.store.list()}
            while True:
                for r in self.store.list():
                    if seen.get(r["id"]) != r["state"]:
                        # Any change, including one an operator made from the CLI in another process.
                        self._event("rollout.state", r["id"], f"{r['id']}: {seen.get(r['id'], 'new')} -> {r['state']}"
                                    + (f" ({r['reason']})" if r["reason"] else ""))
                        seen[r["id"]] = r["state"]
                    if r["state"] in ("created", "running") and r["id"] not in self._active:
                        scope = self._active[r["id"]] = trio.CancelScope()
                        nursery.start_soon(self._drive, r["id"], scope, name=f"rollout:{r['id']}")
                with trio.move_on_after(self.poll):
                    await self._wake.wait()
                self._wake = trio.Event()
                self._states.clear()

    async def _drive(self, rollout_id: str, scope: trio.CancelScope) -> None:
        try:
            with scope:
                await self._drive_inner(rollout_id)
        except Exception as exc:  # noqa: BLE001 - one broken rollout must not stop the others or the site
            log.exception("rollout %s stopped by an error", rollout_id)
            self.store.update(rollout_id, state="paused", reason=f"engine error: {exc}", action="error", detail=repr(exc))
            self._event("rollout.paused", rollout_id, f"{rollout_id}: paused by an engine error: {exc}", Severity.CRITICAL)
        finally:
            self._active.pop(rollout_id, None)

    def _state(self, rollout_id: str) -> str:
        # Read often (before each device starts): cached, refreshed at every poll and every change made here.
        state = self._states.get(rollout_id)
        if state is None:
            state = self._states[rollout_id] = self.store.get(rollout_id)["state"]
        return state

    async def _write(self, method: str, *args: Any, **kw: Any) -> Any:
        """A store method, run by the writer thread; returns once committed."""
        return await self.writer.call(method, *args, **kw)

    async def _drive_inner(self, rollout_id: str) -> None:
        r = self.store.get(rollout_id)
        handler = self.handler_for(r["entry"])
        if handler is None:
            return   # entry not loaded (yet): the next poll tries again
        policy = RolloutPolicy.from_dict(json.loads(r["policy"]))
        artifact = UpdateArtifact(json.loads(r["envelope"]), self.store.payload(r["payload_sha256"]))
        if r["state"] == "created":
            if not await self._plan(r, handler, policy, artifact):
                return
        while True:
            r = self.store.get(rollout_id)
            if r["state"] != "running":
                return
            if r["soak_until"] is not None:
                now = time.time()
                if now < r["soak_until"]:
                    self._event("rollout.soaking", rollout_id, f"{rollout_id}: wave {r['wave'] + 1} starts after soaking "
                                f"{r['soak_until'] - now:.0f} s", soak_until=r["soak_until"])
                    # Wake early for an operator's pause or abort; the deadline itself is in the store.
                    with trio.move_on_at(trio.current_time() + (r["soak_until"] - now)):
                        while self._state(rollout_id) == "running":
                            await trio.sleep(min(self.poll, max(0.0, r["soak_until"] - time.time())))
                    continue
                # The soak is a watch, not only a wait: the devices of the wave before must still be healthy.
                await self._recheck(rollout_id, handler, policy, r["wave"])
                if self._state(rollout_id) != "running":
                    continue
                await self._write("update", rollout_id, soak_until=None, action="soak_done",
                                  detail=f"before wave {r['wave'] + 1}")
            wave = r["wave"]
            todo = self.store.targets(rollout_id, wave=wave, status=("pending", "in_progress"))
            if todo:
                await self._write("audit", rollout_id, None, "wave_start", f"wave {wave + 1}: {len(todo)} devices")
                self._event("rollout.wave", rollout_id, f"{rollout_id}: wave {wave + 1} of {r['waves']} "
                            f"({len(todo)} devices)")
                await self._run_wave(rollout_id, handler, policy, artifact, todo)
                continue   # re-read: paused, aborted, or devices left over
            later = [t["wave"] for t in self.store.targets(rollout_id, status=("pending", "in_progress"))]
            if not later:
                counts = self.store.counts(rollout_id)
                self.store.update(rollout_id, state="completed", reason="", action="completed",
                                  detail=json.dumps(counts))
                self._event("rollout.completed", rollout_id, f"{rollout_id}: completed, {counts['succeeded']} of "
                            f"{counts['total']} devices updated")
                return
            nxt = min(later)
            soak_until = time.time() + policy.soak if policy.soak else None
            await self._write("update", rollout_id, wave=nxt, soak_until=soak_until, action="wave_done",
                              detail=f"wave {wave + 1} done; next wave {nxt + 1}" + (f" after {policy.soak:g} s soak" if soak_until else ""))

    async def _plan(self, r: dict, handler: Any, policy: RolloutPolicy, artifact: UpdateArtifact) -> bool:
        selector = json.loads(r["selector"])
        inventory = handler.inventory() if hasattr(handler, "inventory") else {}
        m = artifact.manifest
        if selector.get("devices"):
            devices = [(d, str((inventory.get(d) or {}).get("hardware_id") or "")) for d in selector["devices"]]
        else:
            hw_wanted = set(selector.get("hardware") or m.hardware_ids)
            devices = [(d, str(s.get("hardware_id") or "")) for d, s in inventory.items()
                       if s.get("hardware_id") in hw_wanted and s.get("hardware_id") in m.hardware_ids]
        if not devices:
            self.store.update(r["id"], state="paused", reason="no target devices (none known to the handler fit)",
                              action="plan", detail="no targets")
            self._event("rollout.paused", r["id"], f"{r['id']}: no target devices", Severity.WARNING)
            return False
        plan = plan_waves(r["id"], devices, policy)
        await self._write("add_targets", r["id"], plan)
        if self.store.get(r["id"])["state"] != "created":
            return False   # paused or aborted while the targets were written: not started after all
        first = min(w for _, _, w in plan)
        canary = [d for d, _, w in plan if w == first]
        self.store.update(r["id"], state="running", wave=first, waves=len(policy.waves), action="plan",
                          detail=f"{len(plan)} devices in {len(policy.waves)} waves; canary {', '.join(canary)}")
        self._event("rollout.started", r["id"], f"{r['id']}: {m.name} {m.version} to {len(plan)} devices, "
                    f"canary {len(canary)}")
        return True

    async def _run_wave(self, rollout_id: str, handler: Any, policy: RolloutPolicy, artifact: UpdateArtifact,
                        todo: list[dict]) -> None:
        limiter = trio.Semaphore(policy.max_concurrent)
        async with trio.open_nursery() as nursery:
            for target in todo:
                await limiter.acquire()
                if self._state(rollout_id) != "running":
                    limiter.release()
                    break   # paused or aborted: what runs finishes, nothing new starts
                nursery.start_soon(self._device, rollout_id, handler, policy, artifact, target, limiter)

    async def _device(self, rollout_id: str, handler: Any, policy: RolloutPolicy, artifact: UpdateArtifact,
                      target: dict, limiter: trio.Semaphore) -> None:
        device = target["device"]
        write = self._write
        step, failure, detail = "stage", "", ""
        try:
            await write("set_target", rollout_id, device, status="in_progress", step=step, started_at=time.time(),
                             failure="", detail="resumed" if target["status"] == "in_progress" else "",
                             action="device_start")
            if artifact.manifest.kind == "config":
                self._desire(rollout_id, handler, device, artifact.manifest.version)
            with trio.move_on_after(policy.device_timeout) as cs:
                try:
                    already = await handler.stage(device, artifact)
                    if already == "installed":
                        await write("audit", rollout_id, device, "staged", "already installed and committed")
                    else:
                        if already != "trial":
                            step = "activate"
                            await write("set_target", rollout_id, device, step=step, action="staged")
                            await handler.activate(device)
                        step = "health"
                        await write("set_target", rollout_id, device, step=step,
                                    action="activated" if already != "trial" else "staged")
                        if not await handler.health_check(device, time.time() + policy.health_window):
                            raise UpdateFailed(f"{device}: health check failed")
                        step = "commit"
                        await write("set_target", rollout_id, device, step=step, action="healthy")
                        await handler.commit(device)
                except UpdateError as exc:
                    failure, detail = exc.failure_type, str(exc)
                except Exception as exc:  # noqa: BLE001 - a handler bug fails this device, not the rollout
                    failure, detail = "failed", f"{type(exc).__name__}: {exc}"
            if cs.cancelled_caught:
                failure, detail = "timed_out", f"{device}: no result within {policy.device_timeout:g} s (at {step})"
            if not failure:
                await write("set_target", rollout_id, device, status="succeeded", finished_at=time.time(),
                            detail="committed", action="device_succeeded")
            else:
                await write("set_target", rollout_id, device, status="failed", failure=failure, detail=detail,
                            finished_at=time.time(), action=f"device_{failure}")
                if step != "stage":
                    await self._rollback(rollout_id, handler, policy, device, step, detail)
            counts = await write("counts", rollout_id)
            self._device_event(rollout_id, device, failure, detail, step, counts)
            self._check_abort(rollout_id, policy, counts)
        finally:
            limiter.release()

    async def _recheck(self, rollout_id: str, handler: Any, policy: RolloutPolicy, next_wave: int) -> None:
        """Health-check the succeeded devices of the wave before `next_wave`; roll back and count any that fail."""
        earlier = [t["wave"] for t in self.store.targets(rollout_id, status=("succeeded",)) if t["wave"] < next_wave]
        if not earlier:
            return
        wave = max(earlier)
        devices = [t["device"] for t in self.store.targets(rollout_id, wave=wave, status=("succeeded",))]
        limiter = trio.Semaphore(policy.max_concurrent)
        sick: list[tuple[str, str, str]] = []

        async def check(device: str) -> None:
            async with limiter:
                failure = ""
                with trio.move_on_after(policy.health_window + 1.0) as cs:
                    try:
                        if not await handler.health_check(device, time.time() + policy.health_window):
                            failure, detail = "failed", f"{device}: unhealthy at the end of the soak"
                    except UpdateError as exc:
                        failure, detail = exc.failure_type, f"{device}: at the end of the soak: {exc}"
                    except Exception as exc:  # noqa: BLE001 - a handler bug fails this device, not the rollout
                        failure, detail = "failed", f"{type(exc).__name__}: {exc}"
                if cs.cancelled_caught:
                    failure, detail = "timed_out", f"{device}: no health answer at the end of the soak"
                if failure:
                    sick.append((device, failure, detail))

        async with trio.open_nursery() as nursery:
            for device in devices:
                nursery.start_soon(check, device)
        await self._write("audit", rollout_id, None, "soak_check", f"wave {wave + 1}: {len(devices) - len(sick)} of "
                          f"{len(devices)} still healthy")
        for device, failure, detail in sick:
            await self._write("set_target", rollout_id, device, status="failed", failure=failure, detail=detail,
                              step="soak", finished_at=time.time(), action=f"device_{failure}")
            await self._rollback(rollout_id, handler, policy, device, "soak", detail)
            counts = await self._write("counts", rollout_id)
            self._device_event(rollout_id, device, failure, detail, "soak", counts)
        if sick:
            self._check_abort(rollout_id, policy, self.store.counts(rollout_id))

    async def _rollback(self, rollout_id: str, handler: Any, policy: RolloutPolicy, device: str,
                        step: str, detail: str) -> None:
        with trio.move_on_after(max(policy.health_window, 5.0)) as cs:
            try:
                await handler.rollback(device)
                # `step` stays where it failed, so status shows why; the audit log has the rollback itself.
                await self._write("set_target", rollout_id, device, status="rolled_back", step=step,
                                  action="device_rolled_back", detail=f"{detail}; rolled back to the previous bank")
                return
            except Exception as exc:  # noqa: BLE001
                await self._write("audit", rollout_id, device, "rollback_failed", f"{type(exc).__name__}: {exc}")
        if cs.cancelled_caught:
            await self._write("audit", rollout_id, device, "rollback_failed", "no answer; the device's own trial watchdog "
                             "reverts an uncommitted bank")

    def _check_abort(self, rollout_id: str, policy: RolloutPolicy, counts: dict) -> None:
        base = json.loads(self.store.get(rollout_id)["baseline"] or "{}")
        executed = counts["executed"] - base.get("executed", 0)
        failures = {k: v - base.get("failures", {}).get(k, 0) for k, v in counts["failures"].items()}
        for criteria in policy.abort:
            why = criteria.tripped(executed, failures)
            if why and self._state(rollout_id) == "running":
                self.store.update(rollout_id, state="paused", reason=f"abort criteria met: {why}",
                                  action="abort_criteria", detail=why)
                self._event("rollout.paused", rollout_id, f"{rollout_id}: paused, abort criteria met: {why}; "
                            "failed devices are rolled back; `sitegate rollout resume` to go on", Severity.CRITICAL)
                return

    # --- twins ------------------------------------------------------------------------------
    def twin_id(self, entry: str, device: str, handler: Any = None) -> str:
        """The site device whose twin shows the handler's `device`: `handler.twin_id(device)` or `<entry>.<device>`."""
        handler = handler if handler is not None else self.handler_for(entry)
        named = getattr(handler, "twin_id", None)
        return (named(device) if named is not None else None) or f"{entry}.{device}"

    def _desire(self, rollout_id: str, handler: Any, device: str, version: str) -> None:
        """A config rollout reached `device`: its twin's desired config is the artifact's version from now on
        (drift shows until the device reports it; a failure or rollback leaves it, as a shadow's desired state)."""
        twins = self.twins()
        if twins is None:
            return
        entry = self._entry.get(rollout_id) or self.store.get(rollout_id)["entry"]
        self._entry[rollout_id] = entry
        try:
            twins.set_desired(self.twin_id(entry, device, handler), version)
        except Exception:  # noqa: BLE001 - the registry must not stop a rollout
            log.exception("%s: desired config of %s not set", rollout_id, device)

    # --- events -----------------------------------------------------------------------------
    def _device_event(self, rollout_id: str, device: str, failure: str, detail: str, step: str, counts: dict) -> None:
        if failure:
            self._event("rollout.device", rollout_id, f"{device}: {failure} at {step}: {detail}", Severity.WARNING,
                        device=device, counts=counts, result=failure, step=step)
        else:
            self._event("rollout.device", rollout_id, f"{device}: updated", device=device, counts=counts,
                        result="succeeded")

    def _event(self, kind: str, rollout_id: str, message: str, severity: Severity = Severity.INFO,
               device: str | None = None, counts: dict | None = None, **data: Any) -> None:
        r = self.store.get(rollout_id) or {}
        counts = counts or self.store.counts(rollout_id)
        data = {"rollout": rollout_id, "state": r.get("state"), "wave": r.get("wave"), "waves": r.get("waves"),
                "done": counts["executed"], "total": counts["total"], "succeeded": counts["succeeded"],
                "failed": counts["failed"], "reason": r.get("reason", ""), **data}
        if device is not None and r.get("entry"):
            data["twin"] = self.twin_id(r["entry"], device)   # the site device whose twin shows it
        try:
            self._emit(Event(kind, "rollouts", device, None, severity, message, data))
        except Exception:  # noqa: BLE001 - a broken subscriber must not stop a rollout
            log.exception("rollout event %s could not be emitted", kind)


def create_rollout(store: RolloutStore, entry: str, artifact: UpdateArtifact, *, policy: RolloutPolicy | None = None,
                   devices: list[str] | None = None, hardware: list[str] | None = None, rollout_id: str | None = None,
                   trusted: Mapping[str, nacl.signing.VerifyKey] | None = None,
                   wake: Callable[[], None] | None = None) -> str:
    """Check the artifact and record a rollout in state `created` (the CLI uses this without an engine)."""
    m = artifact.manifest
    if trusted is not None:
        verify_envelope(artifact.envelope, trusted)
    if len(artifact.payload) != m.length:
        raise UpdateRefused("length", f"payload is {len(artifact.payload)} bytes, the manifest signs {m.length}")
    if hashlib.sha256(artifact.payload).hexdigest() != m.hashes["sha256"]:
        raise UpdateRefused("hash", "sha256 of the payload does not match the signed one")
    if m.expires <= time.time():
        raise UpdateRefused("expired", f"{m.name} {m.version} expired at {m.expires}")
    policy = policy or RolloutPolicy()
    rollout_id = rollout_id or f"{m.name}-{m.version}-{uuid.uuid4().hex[:6]}"
    selector: dict[str, Any] = {}
    if devices:
        selector["devices"] = list(devices)
    if hardware:
        selector["hardware"] = list(hardware)
    store.put_payload(m.hashes["sha256"], artifact.payload)
    store.create(rollout_id, entry, dict(artifact.envelope), m.hashes["sha256"], policy.to_dict(), selector)
    if wake is not None:
        wake()
    return rollout_id


def describe(store: RolloutStore, r: dict) -> dict[str, Any]:
    """A rollout as an operator sees it: state, reason, wave, counts, and the devices that failed."""
    signed = json.loads(r["envelope"])["signed"]
    counts = store.counts(r["id"])
    failed = [{"device": t["device"], "status": t["status"], "failure": t["failure"], "step": t["step"],
               "detail": t["detail"]} for t in store.targets(r["id"], status=("failed", "rolled_back"))]
    return {"id": r["id"], "entry": r["entry"], "update": f"{signed['name']} {signed['version']}",
            "kind": signed["kind"], "state": r["state"], "reason": r["reason"], "wave": r["wave"],
            "waves": r["waves"], "soak_until": r["soak_until"], "created_at": r["created_at"],
            "created_by": r["created_by"], **counts, "failed_devices": failed}
