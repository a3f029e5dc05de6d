"""sitegate: a small trio core hosting signed, versioned integrations.

The core holds no protocol code: adapters, processors, sinks and update
handlers are integrations under ``plugins/``, loaded through the contract in
``hookspecs.py``.
"""

__version__ = "0.1.0"

# The plugin API version. Manifests state the range they need in `requires`
# (for example ">=1.0,<2"); docs/api-stability.md says what may change when.
CORE_API_VERSION = "1.1"
