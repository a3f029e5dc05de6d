"""The API reference cannot drift from the code: the JSON Schema file and the generated command
reference are current, every command is documented and handled, and examples validate."""

from __future__ import annotations

import json
from pathlib import Path

from sitegate.api.handlers import HANDLERS
from sitegate.api.messages import COMMANDS, parse_command
from sitegate.api.schema import BEGIN, END, render, render_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"
HINT = "run: python -m sitegate.api.schema --write"


def test_schema_file_is_generated_from_the_message_classes_and_current():
    assert (DOCS / "websocket-api.schema.json").read_text(encoding="utf-8") == render(), HINT


def test_command_reference_in_the_docs_is_current():
    text = (DOCS / "websocket-api.md").read_text(encoding="utf-8")
    assert text[text.index(BEGIN):text.index(END) + len(END)] == render_markdown(), HINT


def test_every_command_is_documented_handled_and_its_example_validates():
    schema = json.loads(render())
    for name, spec in COMMANDS.items():
        assert f"command.{name}" in schema["$defs"]
        assert name == "ping" or name in HANDLERS, f"{name} has no handler"
        parsed_spec, _ = parse_command({"id": 1, "type": name, **spec.example})
        assert parsed_spec is spec
        assert spec.doc, f"{name} has no docstring"
