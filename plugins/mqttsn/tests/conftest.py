"""Fixtures of the MQTT-SN tests (defined in mqttsn_helpers.py)."""

from mqttsn_helpers import harness, raw_client, third_party  # noqa: F401
