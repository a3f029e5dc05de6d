"""sitegate.testing: a pytest plugin for sitegate's own tests and for plugin authors.

Fixtures in the spirit of Home Assistant's ``hass``: ``sitegate_site`` runs a
real site from a YAML string in a test; ``wait_for`` waits on a condition
with a deadline. See docs/plugin-authors.md, "Testing your integration".
"""

from __future__ import annotations

import pytest

from .harness import FAST_RUNTIME, Recorder, running_site, wait_for, write_site  # noqa: F401
# The `mosquitto` fixture itself stays in sitegate.testing.mosquitto (its name would shadow the module).
from .mosquitto import Mosquitto, MqttObserver, publish_messages  # noqa: F401
from .fixtures import (ManualClock, ProcessorDriver, SinkRecorder, add_entry, clocked_site,  # noqa: F401
                       load_integration, sitegate_clock)
from .wsclient import ApiClient, api_client  # noqa: F401


def pytest_collection_modifyitems(config, items):
    """`async def` tests run under trio without any setup: plugin authors need no pytest.ini.

    (pytest-trio's trio_mode does the same for this repository; marking twice is harmless.)
    """
    import inspect
    for item in items:
        fn = getattr(item, "function", None)
        if fn is not None and inspect.iscoroutinefunction(fn) and not item.get_closest_marker("trio"):
            item.add_marker(pytest.mark.trio)


@pytest.fixture
def sitegate_site(tmp_path):
    """``async with sitegate_site(yaml_text, plugin_dirs=[...]) as host:`` runs a site in the test."""
    def start(text: str, **kw):
        return running_site(tmp_path, text, **kw)
    return start
