"""`sitegate opcua browse` and `sitegate opcua make-cert`, run as a user runs them."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CLI = [sys.executable, "-m", "sitegate.cli", "opcua"]
DEV = ["--dev-plugins", str(REPO / "plugins")]


def test_browse_lists_the_address_space(opcua_server):
    server = opcua_server()
    out = subprocess.run(CLI + ["browse", server.endpoint, "--depth", "3"] + DEV, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "2:Temperature" in out.stdout and "ns=2;s=Line1.Temperature" in out.stdout and "Variable" in out.stdout
    one = subprocess.run(CLI + ["browse", server.endpoint, "ns=2;s=Line1"] + DEV, capture_output=True, text=True,
                         timeout=60)
    assert "2:Reset" in one.stdout and "Method" in one.stdout and "2:Plant" not in one.stdout


def test_browse_unreachable_endpoint_says_so(tmp_path):
    out = subprocess.run(CLI + ["browse", "opc.tcp://127.0.0.1:9/none"] + DEV, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "cannot browse opc.tcp://127.0.0.1:9/none" in out.stdout


def test_make_cert_writes_a_usable_certificate(tmp_path):
    out = subprocess.run(CLI + ["make-cert", str(tmp_path / "client"), "--uri", "urn:plant:gw"] + DEV,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    from cryptography import x509
    cert = x509.load_der_x509_certificate((tmp_path / "client.der").read_bytes())
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    assert uris == ["urn:plant:gw"]
    assert (tmp_path / "client.pem").read_bytes().startswith(b"-----BEGIN")
    assert (tmp_path / "client.pem").stat().st_mode & 0o777 == 0o600     # the private key: owner only
