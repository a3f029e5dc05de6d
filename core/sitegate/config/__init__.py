"""Site files: YAML in, a validated `Site` out (schema.py holds the shape).

`load_site` reads a site file with its layers, includes and secrets and
structures it (loading.py); `validate_site` / `check_site` (validate.py) check
it against the integrations that would run it; changes.py says what applying it
would change. yamlfiles.py and layers.py do the reading and merging.
"""

from __future__ import annotations

from .loading import Composition, LoadedSite, compose_site, load_site  # noqa: F401
from .schema import ApiSettings, EntrySpec, Route, RuntimeSettings, Site  # noqa: F401
