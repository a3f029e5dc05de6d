"""Rules of the tree that keep `make test` collectable and the architecture visible."""

from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_test_modules_have_unique_names():
    # pytest's default import mode cannot hold two test modules with the same basename.
    names = Counter(p.name for root in ("tests", "plugins") for p in (REPO / root).rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []


def test_no_protocol_code_in_the_core():
    # Protocol libraries belong to plugins/; the core only hosts them (asyncio island excepted).
    core = REPO / "core" / "sitegate"
    offenders = [str(p.relative_to(REPO)) for p in core.rglob("*.py")
                 if any(f"import {lib}" in p.read_text() or f"from {lib}" in p.read_text()
                        for lib in ("pymodbus", "asyncua", "paho"))
                 and "testing" not in p.parts]
    assert offenders == []


def test_device_side_wire_format_is_the_update_handlers_own():
    # examples/devices carries its own copy of the MQTT-SN update wire format, as device firmware
    # would; the two sides must never drift apart (the topic ids and layouts are the contract).
    def body(path: Path) -> str:
        text = path.read_text()
        return text[text.index("from __future__"):]
    assert body(REPO / "examples" / "devices" / "wire.py") == body(REPO / "plugins" / "mqttsn_update" / "wire.py")
