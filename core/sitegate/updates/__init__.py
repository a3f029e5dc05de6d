"""Signed firmware and config updates for field devices, and staged rollouts of them.

artifact.py is the signed update format (after Uptane and Mender), rollout.py the
wave engine modelled on AWS IoT Jobs, store.py its SQLite state and audit log,
service.py runs the engine beside a site's entries.
"""

from .artifact import UpdateArtifact, UpdateManifest, sign_update, verify_update  # noqa: F401
from .errors import DeviceUnreachable, UpdateError, UpdateFailed, UpdateRefused  # noqa: F401
