"""The one error the registry raises when it will not let a plugin in.

A `PluginRefused` names the plugin and the check that failed (signature,
expired, rollback, ...), so the loader, the CLI and the audit log all say
the same thing. It is a `PluginLoadError`, so the core treats it like any
plugin that cannot be loaded.
"""

from __future__ import annotations

from ..errors import PluginLoadError

# The checks, as named in messages and in the audit log.
CHECKS = (
    "registry",          # the registry folder or its metadata cannot be read at all
    "signature",         # metadata not signed by the threshold of trusted keys (unknown or revoked key, edited bytes)
    "expired",           # metadata past its expiry date (freeze attack)
    "rollback",          # metadata older than what this site already trusts
    "mix-and-match",     # metadata versions that do not belong to the same snapshot
    "size",              # metadata or artifact larger than allowed (endless data)
    "delegation",        # a publisher signed a plugin outside its delegated path
    "not-found",         # no signed target for this plugin / version
    "artifact-hash",     # the artifact's bytes differ from the signed length and hashes
    "manifest",          # the manifest inside the artifact differs from the signed facts, or is invalid
    "core-api",          # the plugin's core API range excludes this core
    "requirements",      # a Python requirement is not installed in this environment
    "dependencies",      # a missing dependency or a dependency cycle
    "installed-files",   # installed files differ from the signed per-file hashes
    "install",           # the state folder could not be written
)


class PluginRefused(PluginLoadError):
    """`plugin 'modbus': refused (signature): ...`"""

    def __init__(self, domain: str, check: str, detail: str):
        self.check = check
        self.detail = detail
        super().__init__(domain, f"refused ({check}): {detail}")
        self.domain = domain
