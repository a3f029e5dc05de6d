"""End-to-end tests of the mqtt integration against a real Mosquitto (see sitegate.testing.mosquitto)."""

from sitegate.testing.mosquitto import mosquitto  # noqa: F401  (the broker fixture)
