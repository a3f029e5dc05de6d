"""Errors with a place: what went wrong, in which file, at which line and path.

Everything that refuses bad input raises one of these, so the CLI can print
every problem at once (`sitegate check`) instead of stopping at the first.
"""

from __future__ import annotations

from typing import Iterable

import attrs


@attrs.frozen(slots=True)
class Issue:
    """One problem found in a site file, a manifest or a plugin.

    Printed as ``file:line: path: message`` with the parts that are known.
    """

    message: str
    file: str | None = None
    line: int | None = None       # 1-based, where the YAML parser knows it
    path: str = ""                # inside the document, e.g. entries[2].config.port

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        return f"{where}{self.path + ': ' if self.path else ''}{self.message}"


class SitegateError(Exception):
    """Base of sitegate's own errors."""


class ConfigError(SitegateError):
    """A site file, manifest or include that cannot be used; carries every issue found."""

    def __init__(self, issues: Iterable[Issue] | Issue | str):
        if isinstance(issues, (Issue, str)):
            issues = [issues]
        self.issues = [i if isinstance(i, Issue) else Issue(i) for i in issues]
        super().__init__("\n".join(str(i) for i in self.issues))


class PluginLoadError(SitegateError):
    """An integration that cannot be loaded; the message names the plugin and the check."""

    def __init__(self, domain: str, message: str):
        self.domain = domain
        super().__init__(f"plugin {domain!r}: {message}")


class EntryNotReady(SitegateError):
    """Raised by setup_entry when a peer is not reachable yet: the core retries with backoff."""


class EntryError(SitegateError):
    """Raised by setup_entry for a problem a retry will not fix (bad credentials, bad config)."""


class MigrationError(SitegateError):
    """Raised by migrate_config when an entry's config cannot be migrated."""
