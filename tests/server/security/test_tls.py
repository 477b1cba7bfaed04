"""Self-signed certificates and the server's SSL context, over a real TLS socket."""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from session_proxy_server.tls import TLSConfigError, generate_self_signed, server_ssl_context


@Request.application
def hello(request: Request) -> Response:
    return Response(f"hello over {request.scheme}", mimetype="text/plain")


def serve(context: ssl.SSLContext) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, hello, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    generate_self_signed(directory)
    return directory


@pytest.fixture(scope="module")
def https_url(cert_dir: Path) -> Iterator[str]:
    yield from serve(server_ssl_context(cert_dir / "cert.pem", cert_dir / "key.pem"))


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False  # no REQUESTS_CA_BUNDLE / proxies from the environment
        yield s


def test_files_written(tmp_path):
    cert_path, key_path = generate_self_signed(tmp_path / "new")
    assert cert_path == tmp_path / "new" / "cert.pem"
    assert key_path == tmp_path / "new" / "key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert cert_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.public_key() == key.public_key()


def test_certificate_contents(tmp_path):
    cert_path, _ = generate_self_signed(
        tmp_path, hostnames=("proxy.example", "10.1.2.3", "::1"), days=7
    )
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["proxy.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("::1"),
    ]
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.value.ca is True and basic.critical
    assert cert.issuer == cert.subject
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=7) <= lifetime <= datetime.timedelta(days=7, minutes=10)
    # Signed by its own key.
    cert.verify_directly_issued_by(cert)


def test_refuses_to_overwrite(tmp_path):
    cert_path, key_path = generate_self_signed(tmp_path)
    before = cert_path.read_bytes(), key_path.read_bytes()
    with pytest.raises(FileExistsError) as info:
        generate_self_signed(tmp_path)
    assert str(cert_path) in str(info.value) and "overwrite=True" in str(info.value)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before
    generate_self_signed(tmp_path, overwrite=True)
    assert cert_path.read_bytes() != before[0]
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hostnames": ()}, "at least one"),
        ({"hostnames": ("",)}, "hostname"),
        ({"days": 0}, "days"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_self_signed(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_context_settings(cert_dir):
    context = server_ssl_context(cert_dir / "cert.pem", cert_dir / "key.pem")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.protocol == ssl.PROTOCOL_TLS_SERVER


def test_client_verifying_against_the_cert_succeeds(https_url, cert_dir, session):
    response = session.get(https_url, verify=str(cert_dir / "cert.pem"), timeout=10)
    assert response.status_code == 200
    assert response.text == "hello over https"


def test_client_with_default_trust_fails(https_url, session):
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        session.get(https_url, timeout=10)


def test_stdlib_client_verifies_hostname(https_url, cert_dir):
    port = urlsplit(https_url).port
    client = ssl.create_default_context(cafile=str(cert_dir / "cert.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with client.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.getpeercert()["subjectAltName"] == (
                ("DNS", "localhost"),
                ("IP Address", "127.0.0.1"),
            )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch|IP address"):
            client.wrap_socket(sock, server_hostname="other.example")


def test_certificate_without_the_address_is_refused(tmp_path, session):
    cert_path, key_path = generate_self_signed(tmp_path, hostnames=("proxy.example",))
    for url in serve(server_ssl_context(cert_path, key_path)):
        with pytest.raises(requests.exceptions.SSLError, match="(?i)match"):
            session.get(url, verify=str(cert_path), timeout=10)


def test_another_self_signed_cert_is_not_trusted(https_url, tmp_path, session):
    other_cert, _ = generate_self_signed(tmp_path)
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        session.get(https_url, verify=str(other_cert), timeout=10)


def test_context_errors_name_the_file(tmp_path, cert_dir):
    cert, key = cert_dir / "cert.pem", cert_dir / "key.pem"
    missing = tmp_path / "missing.pem"
    with pytest.raises(
        TLSConfigError, match=f"certificate file {re.escape(str(missing))} does not exist"
    ):
        server_ssl_context(missing, key)
    with pytest.raises(
        TLSConfigError, match=f"private key file {re.escape(str(missing))} does not exist"
    ):
        server_ssl_context(cert, missing)

    with pytest.raises(
        TLSConfigError, match=f"^{re.escape(str(key))} does not contain a PEM certificate$"
    ):
        server_ssl_context(key, key)
    with pytest.raises(
        TLSConfigError, match=f"^{re.escape(str(cert))} does not contain a PEM private key$"
    ):
        server_ssl_context(cert, cert)

    other_dir = tmp_path / "other"
    _, other_key = generate_self_signed(other_dir)
    with pytest.raises(TLSConfigError) as info:
        server_ssl_context(cert, other_key)
    assert str(info.value) == f"private key {other_key} does not match certificate {cert}"

    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(
        TLSConfigError, match=f"^{re.escape(str(encrypted))} holds an encrypted private key"
    ):
        server_ssl_context(cert, encrypted)
