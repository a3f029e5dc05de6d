"""The update handler's MQTT-SN messages: round trips, both length forms, truncated input and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from plugins.mqttsn_update import wire
from examples.devices import wire as node_wire

messages = st.one_of(
    st.builds(wire.Publish, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=3000), st.booleans()),
    st.builds(wire.Puback, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 3)),
    st.builds(wire.Connect, st.text(min_size=1, max_size=23), st.integers(0, 0xFFFF)),
    st.builds(wire.Connack, st.integers(0, 3)),
    st.just(wire.Disconnect()),
)


@given(messages)
def test_round_trip(msg):
    data = wire.encode(msg)
    assert wire.decode(data) == msg
    assert (data[0] == 0x01) == (len(data) >= 256)   # three-octet length form exactly when needed


@given(messages, st.data())
def test_truncated_input_is_an_error_never_a_crash(msg, data):
    raw = wire.encode(msg)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(wire.WireError):
        wire.decode(raw[:cut])


@given(st.binary(max_size=300))
def test_garbage_decodes_or_raises_wire_error(raw):
    try:
        wire.decode(raw)
    except wire.WireError:
        pass


@given(messages)
def test_node_copy_speaks_the_same_wire(msg):
    node_msg = node_wire.decode(wire.encode(msg))
    assert node_wire.encode(node_msg) == wire.encode(msg)
