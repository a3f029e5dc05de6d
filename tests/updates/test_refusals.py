"""Tampered, expired, wrong-hardware and older-counter artifacts: refused by the handler and by the node."""

from __future__ import annotations

import time

import attrs
import nacl.signing
import pytest
import trio

from plugins.mqttsn_update.wire import T_OFFER
from sitegate.updates import UpdateArtifact, UpdateRefused

DEVICE = "n0000"   # hardware th-v1, release counter 1, version 1.0.0


def tampered_manifest(art):
    env = {"signed": {**art.envelope["signed"], "hardware_ids": ["th-v1", "th-v9"]},
           "signatures": art.envelope["signatures"]}
    return UpdateArtifact(env, art.payload)


CASES = {
    "signature": lambda make: tampered_manifest(make()),
    "expired": lambda make: make(expires=int(time.time()) - 10),
    "hardware": lambda make: make(hardware=["th-v2", "th-v3"]),
    "counter": lambda make: make(version="0.9.0", counter=1),
    "foreign-key": lambda make: make(key=nacl.signing.SigningKey.generate()),
}
EXPECTED = {"foreign-key": "signature"}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_artifact_refused_by_handler_and_by_node(case, lab, make_artifact):
    artifact = CASES[case](make_artifact)
    check = EXPECTED.get(case, case)
    async with lab(3) as (handler, fleet):
        node = fleet.nodes[DEVICE]
        with pytest.raises(UpdateRefused) as by_handler:
            await handler.stage(DEVICE, artifact)
        assert by_handler.value.check == check
        assert not node.touched                      # the gateway refused before sending a byte
        # Now skip the gateway's checks and offer it straight to the node: it refuses on its own.
        with pytest.raises(UpdateRefused) as by_node:
            await handler._json_request(DEVICE, T_OFFER, dict(artifact.envelope))
        assert by_node.value.check == check and "refused" in str(by_node.value)
        assert node.refusals == [check]
        assert node.slots["firmware"].active["version"] == "1.0.0"


async def test_tampered_payload_refused_by_handler_and_by_node(lab, make_artifact):
    good = make_artifact()
    bad = UpdateArtifact(good.envelope, good.payload[:-1] + b"X")
    async with lab(3) as (handler, fleet):
        node = fleet.nodes[DEVICE]
        with pytest.raises(UpdateRefused) as by_handler:
            await handler.stage(DEVICE, bad)
        assert by_handler.value.check == "hash"
        # Push the altered bytes anyway: the node takes them into flash but will not boot them.
        answer = await handler._json_request(DEVICE, T_OFFER, dict(bad.envelope))
        await handler._send_chunks(DEVICE, bad, answer["offset"], None)
        with pytest.raises(UpdateRefused) as by_node:
            await handler.activate(DEVICE)
        assert by_node.value.check == "hash"
        assert node.slots["firmware"].active["version"] == "1.0.0" and not node.slots["firmware"].trial


async def test_older_than_minimum_version_refused(lab, make_artifact):
    artifact = make_artifact(min_current_version="1.0.5")   # a delta for 1.0.5+, the node runs 1.0.0
    async with lab(3) as (handler, fleet):
        with pytest.raises(UpdateRefused) as exc:
            await handler.stage(DEVICE, artifact)
        assert exc.value.check == "min-version"
        with pytest.raises(UpdateRefused) as exc:
            await handler._json_request(DEVICE, T_OFFER, dict(artifact.envelope))
        assert exc.value.check == "min-version"


def test_manifest_errors_say_what_and_where(make_artifact):
    from sitegate.updates.artifact import UpdateManifest
    signed = make_artifact().envelope["signed"]
    with pytest.raises(UpdateRefused, match=r"manifest.kind: expected one of firmware, config, got 'bios'"):
        UpdateManifest.from_dict({**signed, "kind": "bios"})
    with pytest.raises(UpdateRefused, match=r"manifest: missing field 'release_counter'"):
        UpdateManifest.from_dict({k: v for k, v in signed.items() if k != "release_counter"})
    with pytest.raises(UpdateRefused, match=r"manifest.version: expected dotted integers"):
        UpdateManifest.from_dict({**signed, "version": "1.x"})
