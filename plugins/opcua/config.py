"""The opcua entry's settings: endpoint, security, and the nodes to subscribe to."""

from __future__ import annotations

import attrs

from sitegate.structure import Duration

MODES = ("None", "Sign", "SignAndEncrypt")
POLICIES = ("Basic256Sha256",)
SESSION_TIMEOUT = 60.0                  # seconds; servers revise it into their own limits (asyncua's: 5 s to 10 min)


def _one_of(choices):
    def check(_, attribute, value):
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
    return check


@attrs.frozen
class Deadband:
    """Data-change filter evaluated by the server: only changes larger than this are sent."""

    type: str = attrs.field(default="abs", validator=_one_of(("abs", "percent")))
    value: float = 0.0


@attrs.frozen
class NodePoint:
    """One point: a node by id (`ns=2;s=Line1.Temperature`, `nsu=urn:x;i=5`) or by browse path."""

    name: str
    node: str = ""
    path: str = ""                      # "Plant/Line1/Temperature" under Objects (names in `namespace`)
    sampling_interval: Duration = Duration(0.1)
    queue_size: int = 1
    deadband: Deadband | None = None
    unit: str = ""
    writable: bool = False

    def __attrs_post_init__(self):
        if bool(self.node) == bool(self.path):
            raise ValueError(f"point {self.name!r}: give exactly one of `node` (a node id) or `path` (a browse path)")


@attrs.frozen
class Security:
    """Message security and certificates. Paths are relative to the site file's folder."""

    mode: str = attrs.field(default="None", validator=_one_of(MODES))
    policy: str = attrs.field(default="Basic256Sha256", validator=_one_of(POLICIES))
    certificate: str = ""               # client certificate (DER or PEM), from `sitegate opcua make-cert`
    private_key: str = ""
    trust: str = ""                     # folder of trusted server certificates; rejected ones land in trust/../rejected


@attrs.frozen
class OpcuaConfig:
    config_version = 1

    endpoint: str
    points: list[NodePoint]
    namespace: str = ""                 # namespace URI for names in `path` (default: the server's first own namespace)
    device: str = ""                    # device name under the entry (default: the entry id itself)
    mode: str = attrs.field(default="subscribe", validator=_one_of(("subscribe", "poll")))
    publishing_interval: Duration = Duration(0.1)
    poll_interval: Duration = Duration(1.0)
    username: str = ""
    password: str = ""
    security: Security = attrs.Factory(Security)
    timeout: Duration = Duration(4.0)
    liveness: Duration = Duration(5.0)  # how often the session and the subscription are checked
    reconnect_max: Duration = Duration(30.0)
    # How long the server keeps our session (and its subscription) once we stop talking: a gateway
    # that lost its link reconnects with a new session, and every old one holds one of the
    # server's few session slots until it expires (asyncua asks for an hour by default).
    # Unset: 60 s, or 3 x liveness when that is longer (see session_seconds).
    session_timeout: Duration | None = None

    @property
    def session_seconds(self) -> float:
        """The session timeout asked of the server: `session_timeout`, else 60 s or 3 x liveness."""
        if self.session_timeout is not None:
            return float(self.session_timeout)
        return max(float(SESSION_TIMEOUT), 3 * float(self.liveness))

    def __attrs_post_init__(self):
        if not self.endpoint.startswith("opc.tcp://"):
            raise ValueError(f"endpoint: expected opc.tcp://host:port/path, got {self.endpoint!r}")
        if self.security.mode != "None" and not (self.security.certificate and self.security.private_key):
            raise ValueError("security: mode Sign/SignAndEncrypt needs `certificate` and `private_key` "
                             "(make them with `sitegate opcua make-cert`)")
        if self.session_timeout is not None and float(self.session_timeout) < 3 * float(self.liveness):
            raise ValueError(f"session_timeout: {float(self.session_timeout):g} s is shorter than 3 x liveness "
                             f"({float(self.liveness):g} s): the server would close the session between checks")
        names = [p.name for p in self.points]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"points: duplicate names {sorted(dup)}")
