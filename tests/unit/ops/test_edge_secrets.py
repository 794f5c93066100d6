"""`secrets tls` / `secrets oauth2`: a certificate that really completes a TLS handshake against
its CA, secret files with mode 0600, regeneration that changes the certificate."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path

from cli_trading.ops.edge_secrets import generate_tls, rotate_oauth2

ROOT = Path(__file__).resolve().parents[3]


def handshake(folder: Path, host: str) -> str:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(folder / "server.crt", folder / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"hello")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client_ctx = ssl.create_default_context(cafile=str(folder / "ca.crt"))
    with socket.create_connection(("127.0.0.1", port)) as raw, client_ctx.wrap_socket(raw, server_hostname=host) as tls:
        data = tls.recv(5).decode()
    t.join(5)
    listener.close()
    return data


def test_tls_certificate_completes_a_handshake_and_regenerates(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    first = generate_tls(folder, hosts=["localhost", "127.0.0.1"])
    assert handshake(folder, "localhost") == "hello"
    assert (folder / "server.key").stat().st_mode & 0o777 == 0o600
    assert (folder / "ca.key").stat().st_mode & 0o777 == 0o600
    ca_before = (folder / "ca.crt").read_bytes()
    second = generate_tls(folder, hosts=["localhost", "127.0.0.1"])
    assert second["fingerprint"] != first["fingerprint"] and (folder / "ca.crt").read_bytes() == ca_before
    generate_tls(folder, hosts=["localhost"], renew_ca=True)
    assert (folder / "ca.crt").read_bytes() != ca_before
    assert handshake(folder, "localhost") == "hello"


def test_oauth2_rotation_changes_the_cookie_secret_only(tmp_path: Path) -> None:
    (tmp_path / "oauth2_client_id").write_text("my-client\n")
    rotate_oauth2(tmp_path)
    first = (tmp_path / "oauth2_cookie_secret").read_text()
    rotate_oauth2(tmp_path)
    assert (tmp_path / "oauth2_cookie_secret").read_text() != first
    assert (tmp_path / "oauth2_client_id").read_text() == "my-client\n"
    assert (tmp_path / "oauth2_client_secret").read_text().strip() == "CHANGE-ME"
    assert (tmp_path / "oauth2_cookie_secret").stat().st_mode & 0o777 == 0o600


def test_the_runbook_script_runs_both(tmp_path: Path) -> None:
    for args in (["tls", "--folder", str(tmp_path)], ["oauth2", "--folder", str(tmp_path)]):
        res = subprocess.run(
            [str(ROOT / "scripts" / "manage-secrets.sh"), *args], capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0, res.stderr
    assert (tmp_path / "tls" / "server.crt").exists() and (tmp_path / "oauth2_cookie_secret").exists()


def test_forced_rotation_covers_the_containment_list(tmp_path: Path) -> None:
    from cli_trading.ops.edge_secrets import contain

    generate_tls(tmp_path / "tls", hosts=["edge.example", "127.0.0.1"])
    before = (tmp_path / "tls" / "server.crt").read_bytes()
    lines = contain(tmp_path)
    assert (tmp_path / "tls" / "server.crt").read_bytes() != before
    assert (tmp_path / "oauth2_cookie_secret").exists()
    assert any("TLS certificate regenerated" in x for x in lines) and any("identity provider" in x for x in lines)
    assert handshake(tmp_path / "tls", "edge.example") == "hello"  # the same names as before
