"""Rollout state is written off the trio thread, many writes per commit, each one still all-or-nothing."""

from __future__ import annotations

import threading
from functools import partial

import pytest
import trio

from sitegate.updates.policy import RolloutPolicy
from sitegate.updates.rollout import RolloutEngine
from sitegate.updates.store import RolloutStore, StateWriter
from tests.updates.measure_store import InstantHandler


async def test_queued_writes_share_a_commit_and_a_failing_one_fails_alone(tmp_path):
    store = RolloutStore(tmp_path)
    store.create("r1", "e", {"signed": {}}, "0" * 64, {}, {})
    store.add_targets("r1", [("a", "hw", 0), ("b", "hw", 0)])
    writer = StateWriter(store)
    results: dict[str, object] = {}

    async def call(name, method, *args, **kw):
        try:
            results[name] = await writer.call(method, *args, **kw)
        except Exception as exc:  # noqa: BLE001
            results[name] = exc

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        async with trio.open_nursery() as calls:
            calls.start_soon(partial(call, "a", "set_target", "r1", "a", status="succeeded",
                                     action="device_succeeded", detail="committed"))
            calls.start_soon(call, "dup", "create", "r1", "e", {"signed": {}}, "0" * 64, {}, {})
            # Its row is written, then its audit line fails: the row must go too, and only its row.
            calls.start_soon(partial(call, "half", "update", "r1", reason="changed", action="x", detail=object()))
            calls.start_soon(partial(call, "b", "set_target", "r1", "b", status="in_progress", step="stage",
                                     action="device_start"))
        nursery.cancel_scope.cancel()
    assert (writer.commits, writer.calls) == (1, 4)        # one commit for all four
    assert isinstance(results["dup"], ValueError) and "already exists" in str(results["dup"])
    assert isinstance(results["half"], Exception) and results["a"] is None and results["b"] is None
    # Committed, seen by another connection (as after a restart); the failed create left nothing behind.
    fresh = RolloutStore(tmp_path)
    assert fresh.get("r1")["reason"] == ""
    assert {t["device"]: t["status"] for t in fresh.targets("r1")} == {"a": "succeeded", "b": "in_progress"}
    assert sorted(a["action"] for a in fresh.audit_log("r1")) == ["create", "device_start", "device_succeeded"]


async def test_a_store_method_keeps_its_row_and_audit_line_together(tmp_path):
    store = RolloutStore(tmp_path)
    store.create("r1", "e", {"signed": {}}, "0" * 64, {}, {})
    with pytest.raises(Exception):   # the audit line cannot be written (a detail SQLite cannot bind) ...
        store.update("r1", reason="changed", action="x", detail=object())
    assert store.get("r1")["reason"] == ""                           # ... so the update is undone too
    assert [a["action"] for a in store.audit_log("r1")] == ["create"]


async def test_the_engine_writes_device_progress_from_a_worker_thread(tmp_path, monkeypatch):
    on_loop: list[str] = []
    trio_thread = threading.current_thread()
    for method in ("set_target", "audit", "add_targets"):
        real = getattr(RolloutStore, method)

        def spy(self, *args, _real=real, _name=method, **kw):
            if threading.current_thread() is trio_thread:
                on_loop.append(_name)
            return _real(self, *args, **kw)
        monkeypatch.setattr(RolloutStore, method, spy)
    import nacl.signing
    from sitegate.updates import sign_update
    artifact = sign_update(b"x" * 64, nacl.signing.SigningKey(b"\x05" * 32), name="fw", version="1.1.0",
                           release_counter=2, hardware_ids=["hw"])
    handler = InstantHandler(300)
    engine = RolloutEngine(RolloutStore(tmp_path), lambda entry: handler, poll=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        rid = engine.start("e", artifact, policy=RolloutPolicy(soak=0, max_concurrent=50))
        with trio.fail_after(30):
            while engine.status(rid)[0]["state"] != "completed":
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert engine.status(rid)[0]["succeeded"] == 300
    assert len(engine.store.audit_log(rid, device="d00007")) == 5
    assert on_loop == []
    assert engine.writer.calls >= 300 * 6 and engine.writer.commits < engine.writer.calls / 3   # grouped


async def test_a_pause_while_the_plan_is_written_is_not_overwritten(tmp_path):
    import nacl.signing
    from sitegate.updates import sign_update
    artifact = sign_update(b"x" * 64, nacl.signing.SigningKey(b"\x05" * 32), name="fw", version="1.1.0",
                           release_counter=2, hardware_ids=["hw"])
    handler = InstantHandler(20)
    staged: list[str] = []
    real_stage = handler.stage

    async def stage(device, artifact):
        staged.append(device)
        await real_stage(device, artifact)
    handler.stage = stage
    engine = RolloutEngine(RolloutStore(tmp_path), lambda entry: handler, poll=0.05)
    real_call = engine.writer.call

    async def call(method, *args, **kw):
        if method == "add_targets":
            engine.pause(args[0])   # the operator, while the writer thread has the targets
        return await real_call(method, *args, **kw)
    engine.writer.call = call
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        rid = engine.start("e", artifact, policy=RolloutPolicy(soak=0))
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert engine.status(rid)[0]["state"] == "paused" and staged == []
