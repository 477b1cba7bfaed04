"""TLS for the server: a self-signed certificate for testing and small
deployments, and the :class:`ssl.SSLContext` the server listens with.

The self-signed certificate is its own CA (``basicConstraints CA:TRUE``), so a
client can pass the certificate file itself as its CA bundle
(``requests.get(url, verify="cert.pem")``) and get full verification,
hostname included, without trusting anything else.  Its key is an EC P-256
key.  For production use a certificate from your own CA; only
:func:`server_ssl_context` is needed then.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .files import read_file, refuse_existing, write_file

__all__ = ["CERT_FILE", "KEY_FILE", "TLSConfigError", "generate_self_signed", "server_ssl_context"]

#: File names :func:`generate_self_signed` writes.
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


class TLSConfigError(Exception):
    """A certificate or key file is missing, unreadable or unusable."""


def _subject_alternative_names(hostnames: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hostnames:
        if not isinstance(host, str) or not host.strip():
            raise ValueError(f"invalid hostname {host!r}: must be a non-empty string")
        host = host.strip()
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    if not names:
        raise ValueError("at least one hostname or IP address is required")
    return names


def generate_self_signed(
    directory: str | os.PathLike[str],
    hostnames: Iterable[str] = ("localhost", "127.0.0.1"),
    days: int = 30,
    *,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write a self-signed certificate and its key to ``directory``.

    The certificate (``cert.pem``) names every entry of ``hostnames`` as a
    subject alternative name -- IP addresses as IP entries, the rest as DNS
    names -- and is valid from five minutes ago (clock skew) for ``days``
    days.  The key (``key.pem``, PKCS8, unencrypted) gets mode 0600.

    :param overwrite: replace existing files; without it an existing file
        raises :class:`FileExistsError` and nothing is written.
    :return: ``(cert_path, key_path)``.
    """
    directory = Path(directory)
    names = _subject_alternative_names(hostnames)
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    cert_path = directory / CERT_FILE
    key_path = directory / KEY_FILE
    if not overwrite:
        refuse_existing((cert_path, key_path), "the certificate and key")
    directory.mkdir(parents=True, exist_ok=True)

    key = ec.generate_private_key(ec.SECP256R1())
    first = names[0].value
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, str(first)),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "session-proxy self-signed"),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    replaces = "the certificate and key"
    write_file(key_path, key_pem, 0o600, overwrite, replaces)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644, overwrite,
               replaces)
    return cert_path, key_path


def server_ssl_context(
    cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]
) -> ssl.SSLContext:
    """A server-side context with ``cert_path`` (PEM, may hold a chain) and ``key_path``.

    TLS 1.2 is the minimum version.  Both files are checked first so a bad
    one is named in the error rather than left to OpenSSL's message.

    :raises TLSConfigError: a file is missing or unreadable, the certificate
        file holds no PEM certificate, the key file no unencrypted PEM private
        key, or the key does not belong to the certificate.
    """
    cert_path = Path(cert_path)
    key_path = Path(key_path)
    cert_data = read_file(cert_path, "certificate", TLSConfigError)
    key_data = read_file(key_path, "private key", TLSConfigError)
    try:
        certs = x509.load_pem_x509_certificates(cert_data)
    except ValueError:
        certs = []
    if not certs:
        raise TLSConfigError(f"{cert_path} does not contain a PEM certificate")
    try:
        serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise TLSConfigError(
            f"{key_path} holds an encrypted private key; an unencrypted key is required"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TLSConfigError(f"{key_path} does not contain a PEM private key") from None

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise TLSConfigError(
                f"private key {key_path} does not match certificate {cert_path}"
            ) from None
        raise TLSConfigError(
            f"cannot load certificate {cert_path} with key {key_path}: {exc}"
        ) from None
    return context
