"""The signed plugin registry: TUF trust, verified install, rollback, audit.

Owner side: repository.py (metadata), keys.py (Ed25519 signing), artifact.py
(reproducible builds). Site side: client.py (python-tuf ngclient), store.py
(install/activate/rollback/verify), source.py (start-up for the loader).
"""

from .errors import PluginRefused
from .source import RegistrySource, prepare_plugins, verify_and_install, verify_installed
from .store import InstalledPlugin, PluginStore

__all__ = ["InstalledPlugin", "PluginRefused", "PluginStore", "RegistrySource", "prepare_plugins",
           "verify_and_install", "verify_installed"]
