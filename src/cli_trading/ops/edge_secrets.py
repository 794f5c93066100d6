"""Secrets of the edge: the TLS certificate nginx serves (a private CA and a server certificate it
signs, the runbook's "Regenerate TLS certificates") and oauth2-proxy's cookie secret ("Reset
OAuth2 credentials": the client id and secret themselves must be reset at the identity provider).
Files go under <secrets>/tls/ and <secrets>/oauth2_*, keys and secrets with mode 0600."""

from __future__ import annotations

import base64
import ipaddress
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cli_trading.files import write_atomic

OAUTH2_PROVIDER_FILES = ("oauth2_client_id", "oauth2_client_secret")


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, data, mode=0o600 if secret else 0o644)  # nginx never reads half a certificate


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cli-trading"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _ca(folder: Path, *, renew: bool, now: datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, crt_path = folder / "ca.key", folder / "ca.crt"
    if not renew and key_path.exists() and crt_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        return key, x509.load_pem_x509_certificate(crt_path.read_bytes())  # type: ignore[return-value]  # our CA key: EC
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("cli-trading CA"))
        .issuer_name(_name("cli-trading CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), secret=True)
    _write(crt_path, cert.public_bytes(serialization.Encoding.PEM), secret=False)
    return key, cert


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def generate_tls(folder: Path, *, hosts: list[str], days: int = 397, renew_ca: bool = False) -> dict[str, Any]:
    """(Re)generate the server certificate, signed by the CA (made when missing or `renew_ca`)."""
    now = datetime.now(UTC)
    ca_key, ca_cert = _ca(folder, renew=renew_ca, now=now)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(folder / "server.key", _key_pem(key), secret=True)
    _write(folder / "server.crt", cert.public_bytes(serialization.Encoding.PEM), secret=False)
    return {
        "ca": str(folder / "ca.crt"),
        "certificate": str(folder / "server.crt"),
        "hosts": hosts,
        "notAfter": cert.not_valid_after_utc.isoformat(),
        "caRenewed": renew_ca,
        "fingerprint": cert.fingerprint(hashes.SHA256()).hex()[:16],
    }


def rotate_oauth2(folder: Path) -> dict[str, Any]:
    """New cookie secret (signs out every session); placeholders for the provider's credentials."""
    cookie = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    _write(folder / "oauth2_cookie_secret", cookie.encode() + b"\n", secret=True)
    for name in OAUTH2_PROVIDER_FILES:
        if not (folder / name).exists():
            _write(folder / name, b"CHANGE-ME\n", secret=True)
    return {
        "cookieSecret": "rotated",
        "reminder": "reset the client id and secret at your identity provider, "
        "write them to secrets/oauth2_client_id and secrets/oauth2_client_secret, then "
        "`docker-compose restart oauth2-proxy`",
    }


def contain(folder: Path) -> list[str]:
    """The rest of the runbook's breach containment, after the admin token: a new TLS certificate
    (same CA, so clients keep trusting it) and a new oauth2-proxy cookie secret. What cannot be
    rotated from here is said, not skipped silently."""
    done = []
    tls = folder / "tls"
    if (tls / "ca.key").exists() or (tls / "server.crt").exists():
        res = generate_tls(tls, hosts=_hosts_of(tls / "server.crt"))
        done.append(f"TLS certificate regenerated ({res['fingerprint']}); reload nginx")
    else:
        done.append("no TLS certificate under secrets/tls: run `manage-secrets.sh tls` to create one")
    done.append("oauth2: " + rotate_oauth2(folder)["reminder"])
    done.append(
        "exchange API keys, webhook URLs and the PostgreSQL password: rotate them at their provider "
        "(ALTER ROLE trader PASSWORD for PostgreSQL) and replace the files in secrets/"
    )
    return done


def _hosts_of(cert_path: Path) -> list[str]:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [str(n.value) for n in san] or ["localhost"]
    except (OSError, ValueError, x509.ExtensionNotFound):
        return ["localhost", "127.0.0.1"]
