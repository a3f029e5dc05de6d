"""Site files: YAML in, a validated `Site` out (schema.py holds the shape).

`load_site` reads a site file with its includes and secrets and structures it;
`validate_site` checks it against the integrations that would run it.
"""

from __future__ import annotations

from .loading import LoadedSite, load_site  # noqa: F401
from .schema import ApiSettings, EntrySpec, Route, RuntimeSettings, Site  # noqa: F401
