"""The self-signed certificate of the local edge, made without an openssl binary."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

from cryptography import x509

from cli_trading.ops import tls


def test_certificate_names_every_host_and_loads_into_an_ssl_context(tmp_path: Path) -> None:
    cert, key = tls.self_signed(tmp_path / "c.pem", tmp_path / "k.pem", hosts=["localhost", "127.0.0.1", "10.0.0.5"])
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    ips = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.0.0.5")]
    assert san.get_values_for_type(x509.IPAddress) == ips
    assert parsed.issuer == parsed.subject  # self-signed
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    ssl.create_default_context(cafile=str(cert))  # a client can trust it as it is


def test_private_key_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    _, key = tls.self_signed(tmp_path / "c.pem", tmp_path / "k.pem", hosts=["localhost"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes()
