"""Simulated field devices: MQTT-SN sensor nodes with A/B banks that check updates themselves.

node.py is one node, fleet.py runs many in one trio process (also as
`python -m examples.devices`), wire.py is the node's own copy of the MQTT-SN bits.
modbus.py and opcua.py (`python -m examples.devices.modbus --port P`, `... .opcua PORT`) run the
Modbus and OPC UA tests' simulated servers until Ctrl-C or SIGTERM, for the docs (serve.py:
a taken port is waited for, so concurrent runs of the docs take turns).
"""
