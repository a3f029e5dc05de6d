"""The signed plugin registry: TUF trust, verified install, rollback, audit.

Owner side: repository.py (metadata), keys.py (Ed25519 signing), artifact.py
(reproducible builds). Site side: client.py (python-tuf ngclient), store.py
(install/activate/rollback/verify), source.py (start-up for the loader).
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import PluginRefused

# The site side pulls in python-tuf's client and urllib3 (a quarter of a second): imported when
# first used, so commands that never touch a registry (`sitegate --help`, `token`, `dlq`) start fast.
_LAZY = {"RegistrySource": "source", "prepare_plugins": "source", "verify_and_install": "source",
         "verify_installed": "source", "InstalledPlugin": "store", "PluginStore": "store"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = ["InstalledPlugin", "PluginRefused", "PluginStore", "RegistrySource", "prepare_plugins",
           "verify_and_install", "verify_installed"]
