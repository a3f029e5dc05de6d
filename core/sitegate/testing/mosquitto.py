"""A real Mosquitto broker for tests: found or installed, started per test on a free loopback port.

`Mosquitto` writes a generated config (persistence on, optional TLS, mutual TLS and
password file), runs the broker as a child process and can stop and start it mid-test.
`Certificates` makes a throw-away CA, server and client certificate with `cryptography`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import attrs
import pytest
import trio

_found: str | None = None
_install_error: str | None = None


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None. Debian puts it in /usr/sbin, often not on PATH."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_mosquitto() -> str:
    """Return the broker's path; install it from Debian's packages when we are root, else skip the test."""
    global _found, _install_error
    if _found:
        return _found
    path = find_mosquitto()
    if path is None and _install_error is None:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            try:
                subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True, timeout=300)
                subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "mosquitto"],
                               env=env, check=True, capture_output=True, timeout=600)
            except (subprocess.SubprocessError, OSError) as exc:
                _install_error = f"apt-get install mosquitto failed: {exc}"
            path = find_mosquitto()
        else:
            _install_error = ("mosquitto is not installed and we are not root to apt-get it; "
                              "install it (sudo apt-get install mosquitto) to run this test")
    if path is None:
        pytest.skip(_install_error or "mosquitto not found after installing it")
    _found = path
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@attrs.define
class Certificates:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""

    folder: Path
    ca: Path = attrs.field(init=False)
    server_cert: Path = attrs.field(init=False)
    server_key: Path = attrs.field(init=False)
    client_cert: Path = attrs.field(init=False)
    client_key: Path = attrs.field(init=False)
    other_ca: Path = attrs.field(init=False)     # a CA nobody trusts: for "wrong certificate" tests

    def __attrs_post_init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self.folder.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)

        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        def write_key(path: Path, key) -> None:
            path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))

        def make_ca(cn: str):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(minutes=5))
                    .not_valid_after(now + datetime.timedelta(days=2))
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                    .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                 content_commitment=False, key_encipherment=False,
                                                 data_encipherment=False, key_agreement=False,
                                                 encipher_only=False, decipher_only=False), critical=True)
                    .sign(key, hashes.SHA256()))
            return key, cert

        def issue(ca_key, ca_cert, cn: str, usage, san=None):
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_cert.subject)
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(minutes=5))
                       .not_valid_after(now + datetime.timedelta(days=2))
                       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                       .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
            if san:
                builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
            return key, builder.sign(ca_key, hashes.SHA256())

        ca_key, ca_cert = make_ca("sitegate test CA")
        server_key, server_cert = issue(
            ca_key, ca_cert, "localhost", ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        client_key, client_cert = issue(ca_key, ca_cert, "sitegate-gateway", ExtendedKeyUsageOID.CLIENT_AUTH)
        _, other_cert = make_ca("untrusted test CA")

        pem = serialization.Encoding.PEM
        self.ca = self.folder / "ca.pem"
        self.ca.write_bytes(ca_cert.public_bytes(pem))
        self.other_ca = self.folder / "other-ca.pem"
        self.other_ca.write_bytes(other_cert.public_bytes(pem))
        self.server_cert = self.folder / "server.pem"
        self.server_cert.write_bytes(server_cert.public_bytes(pem))
        self.server_key = self.folder / "server.key"
        write_key(self.server_key, server_key)
        self.client_cert = self.folder / "client.pem"
        self.client_cert.write_bytes(client_cert.public_bytes(pem))
        self.client_key = self.folder / "client.key"
        write_key(self.client_key, client_key)


class Mosquitto:
    """One broker process with a generated config. Ports stay the same across stop/start.

    `port` is a plain listener (always there, so tests can observe with a bare client);
    with ``tls=True`` `tls_port` is a TLS listener, requiring a client certificate when
    ``mutual_tls=True``. ``users`` turns anonymous access off on every listener.
    """

    def __init__(self, folder: Path, *, tls: bool = False, mutual_tls: bool = False,
                 users: dict[str, str] | None = None, persistence: bool = True,
                 options: dict[str, object] | None = None):
        self.binary = ensure_mosquitto()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls = tls or mutual_tls
        self.mutual_tls = mutual_tls
        self.tls_port = free_port() if self.tls else None
        self.certs = Certificates(self.folder / "certs") if self.tls else None
        self.users = dict(users or {})
        self.log_path = self.folder / "mosquitto.log"
        self.config_path = self.folder / "mosquitto.conf"
        self.process: subprocess.Popen | None = None
        self._started_once = False
        self._persistence, self._options = persistence, options or {}
        self._write_config(persistence, self._options)

    def _write_config(self, persistence: bool, options: dict[str, object]) -> None:
        data = self.folder / "data"
        data.mkdir(exist_ok=True)
        lines = [
            "user root",                    # as root mosquitto would switch to 'mosquitto' and lose our tmp files
            "per_listener_settings false",
            f"allow_anonymous {'false' if self.users else 'true'}",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {data}/",
            "log_dest stderr",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            # Offline persistent sessions keep their QoS 1 messages; the default (1000) is too small
            # for "published while the gateway was down" tests with real volumes.
            "max_queued_messages 1000000",
        ]
        for key, value in options.items():
            lines.append(f"{key} {value}")
        if self.users:
            pw = self.folder / "passwords"
            pw.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True,
                               capture_output=True, env=dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/bin"))
            lines.append(f"password_file {pw}")
        lines += ["", f"listener {self.port} {self.host}"]
        if self.tls:
            assert self.certs is not None
            lines += [f"listener {self.tls_port} {self.host}",
                      f"cafile {self.certs.ca}", f"certfile {self.certs.server_cert}",
                      f"keyfile {self.certs.server_key}"]
            if self.mutual_tls:
                lines += ["require_certificate true"]
        self.config_path.write_text("\n".join(lines) + "\n")

    # --- lifecycle ---------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        if self.running:
            return self
        for attempt in range(3):
            try:
                return self._start(timeout)
            except RuntimeError as exc:
                # Another process took a port between free_port() and the broker's bind: on the
                # first start only (later starts must keep the ports clients know), pick new ones.
                if self._started_once or "Address already in use" not in str(exc) or attempt == 2:
                    raise
                self.port = free_port()
                self.tls_port = free_port() if self.tls else None
                self._write_config(self._persistence, self._options)
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> "Mosquitto":
        log = open(self.log_path, "ab")
        offset = log.tell()
        self.process = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdout=log, stderr=log,
                                        stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        ports = [p for p in (self.port, self.tls_port) if p]
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode} at start:\n{self.log_tail()}")
            # "running" is logged once every listener is bound: a port that accepts before that
            # may belong to someone else.
            if self._log_since(offset).find(" running") >= 0 and all(_accepts(self.host, p) for p in ports):
                self._started_once = True
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on {ports} within {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM): the broker saves its persistent sessions first."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Hard stop (SIGKILL): what was not yet saved is lost, like a power cut."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self) -> "Mosquitto":
        self.stop()
        return self.start()

    async def astart(self) -> "Mosquitto":
        return await trio.to_thread.run_sync(self.start)

    async def astop(self) -> None:
        await trio.to_thread.run_sync(self.stop)

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def url(self, tls: bool = False) -> str:
        return f"{'mqtts' if tls else 'mqtt'}://{self.host}:{self.tls_port if tls else self.port}"


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def mosquitto(tmp_path) -> Iterator:
    """Factory: ``broker = mosquitto(tls=True, users={"u": "p"})`` starts a broker, stopped after the test."""
    brokers: list[Mosquitto] = []

    def start(**kw) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"mosquitto{len(brokers)}", **kw)
        brokers.append(broker)
        return broker.start()

    yield start
    for broker in brokers:
        broker.kill()


class MqttObserver:
    """A bare paho subscriber on a broker's plain port that records what arrives (for assertions).

    With ``session="<client id>"`` it keeps a persistent session (QoS 1), so it misses
    nothing across broker restarts. Use as a context manager; `wait_count` waits with a deadline.
    """

    def __init__(self, broker: Mosquitto, topics: str | list[str] = "#", *, session: str | None = None,
                 username: str | None = None, password: str | None = None, timeout: float = 10.0):
        import paho.mqtt.client as mqtt

        self.broker = broker
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.messages: list = []           # paho MQTTMessage objects, in arrival order
        self._subscribed = False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=session or "",
                                  clean_session=session is None)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.timeout = timeout
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.append(m)
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, *args):
        self._subscribed = True

    def __enter__(self) -> "MqttObserver":
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=10)
        self.client.loop_start()
        deadline = time.monotonic() + self.timeout
        while not self._subscribed:
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"observer could not subscribe on {self.broker.url()}:\n{self.broker.log_tail()}")
            time.sleep(0.005)
        return self

    def __exit__(self, *exc) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic_filter: str) -> list:
        import paho.mqtt.client as mqtt
        return [m for m in list(self.messages) if mqtt.topic_matches_sub(topic_filter, m.topic)]

    async def wait_count(self, n: int, topic_filter: str = "#", timeout: float = 10.0) -> list:
        """Wait until at least `n` messages matching `topic_filter` arrived; return them."""
        with trio.move_on_after(timeout):
            while len(self.on(topic_filter)) < n:
                await trio.sleep(0.005)
        got = self.on(topic_filter)
        if len(got) < n:
            raise AssertionError(f"timed out after {timeout:g} s: {len(got)} of {n} messages on {topic_filter!r}")
        return got

    async def wait_for(self, predicate, what: str, timeout: float = 10.0) -> list:
        with trio.move_on_after(timeout):
            while not predicate(list(self.messages)):
                await trio.sleep(0.005)
        if not predicate(list(self.messages)):
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; "
                                 f"{len(self.messages)} messages arrived")
        return list(self.messages)


def publish_messages(broker: Mosquitto, messages, *, qos: int = 1, timeout: float = 10.0) -> None:
    """Publish (topic, payload) pairs with a bare paho client and wait for every PUBACK (blocking)."""
    import paho.mqtt.client as mqtt

    messages = list(messages)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.01, deadline - time.monotonic()))
            if not info.is_published():
                raise RuntimeError(f"publishing to {broker.url()}: no PUBACK within {timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
