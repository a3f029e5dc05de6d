"""sitegate.testing: a pytest plugin for sitegate's own tests and for plugin authors.

Fixtures in the spirit of Home Assistant's ``hass``: ``sitegate_site`` runs a
real site from a YAML string in a test; ``wait_for`` waits on a condition
with a deadline. See docs/plugin-authors.md, "Testing your integration".
"""

from __future__ import annotations

import pytest

from .harness import FAST_RUNTIME, Recorder, running_site, wait_for, write_site  # noqa: F401


@pytest.fixture
def sitegate_site(tmp_path):
    """``async with sitegate_site(yaml_text, plugin_dirs=[...]) as host:`` runs a site in the test."""
    def start(text: str, **kw):
        return running_site(tmp_path, text, **kw)
    return start
