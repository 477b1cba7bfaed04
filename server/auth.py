"""Ed25519-signed bearer tokens.

A token is a compact JWS (a JWT)::

    base64url(header) "." base64url(claims) "." base64url(signature)

base64url without padding.  The header is always ``{"alg":"EdDSA","typ":"JWT"}``
and the signature is Ed25519 over the ASCII bytes ``header "." claims``.  The
claims are:

``sub``
    who the token was issued to (a worker name, a host, a person).
``role``
    what the holder is: one of :data:`ROLES`, or any other name matching
    ``[a-z][a-z0-9-]*`` so a deployment can add its own.
``iat`` / ``exp``
    issued-at and expiry, integer seconds since the epoch.
``aud``
    the service the token is for, ``"session-proxy"`` unless configured.
``jti``
    a random token id, optional; useful in logs.

Threat model: the private key stays with whoever issues tokens (an operator,
a deployment tool); the server only holds the public key, so a stolen server
configuration cannot mint tokens.  A token is a bearer credential: anyone who
holds it can use it until it expires, so keep lifetimes short and send tokens
over TLS only.  The verifier accepts nothing but EdDSA -- ``"none"``, HMAC and
any other algorithm are rejected before the signature is looked at, so a
token cannot pick a weaker check for itself -- and it checks audience and
expiry on every call.  There is no revocation list: rotate the key to revoke
everything at once.

A verifier keeps the verdicts of the tokens it accepted (:class:`VerdictCache`,
a bounded LRU keyed by the token's text): a token seen again is not decoded
nor its signature checked (about 150 µs of CPU), only its expiry against the
clock, so an expired token is refused however recently it was accepted.
Refusals are not kept.  Assigning another :attr:`TokenVerifier.public_key`
(key rotation) empties the cache.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from .files import read_file, refuse_existing, write_file

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_MAX_TOKEN_LIFETIME",
    "ROLES",
    "AuthError",
    "Claims",
    "KeyFileError",
    "TokenVerifier",
    "VerdictCache",
    "generate_keypair",
    "issue_token",
    "load_private_key",
    "load_public_key",
    "parse_ttl",
]

#: The roles session-proxy itself knows about.  Other names matching
#: :data:`ROLE_PATTERN` are accepted too.
ROLES: tuple[str, ...] = ("worker", "dag-processor", "triggerer", "admin")

#: What a role name must look like.
ROLE_PATTERN = re.compile(r"[a-z][a-z0-9-]*")

#: The ``aud`` claim tokens carry unless told otherwise.
DEFAULT_AUDIENCE = "session-proxy"

#: Longest token accepted; anything longer is rejected before decoding.
MAX_TOKEN_LENGTH = 8192

#: How many accepted tokens a verifier remembers unless told otherwise.
DEFAULT_VERDICT_CACHE_SIZE = 4096

#: Longest token lifetime (``exp - iat``) a server accepts unless configured
#: otherwise (``--max-token-lifetime``): 24 hours.
DEFAULT_MAX_TOKEN_LIFETIME = 24 * 3600

_HEADER = {"alg": "EdDSA", "typ": "JWT"}
_WHITESPACE = re.compile(r"\s")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9._~+/-]{0,31}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TTL = re.compile(r"(\d+)\s*([smhd]?)", re.IGNORECASE)
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class AuthError(Exception):
    """A token was refused; ``reason`` (also the message) says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyFileError(Exception):
    """A key file is missing or does not hold the expected Ed25519 key."""


@dataclasses.dataclass(frozen=True)
class Claims:
    """The verified contents of a token.

    :param subject: the ``sub`` claim.
    :param role: the ``role`` claim.
    :param issued_at: the ``iat`` claim, seconds since the epoch.
    :param expires_at: the ``exp`` claim, seconds since the epoch.
    :param audience: the ``aud`` claim.
    :param token_id: the ``jti`` claim, or ``None`` when the token has none.
    """

    subject: str
    role: str
    issued_at: int
    expires_at: int
    audience: str
    token_id: str | None = None


# -- keys ---------------------------------------------------------------------


def generate_keypair(
    directory: str | os.PathLike[str],
    name: str = "session-proxy",
    *,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Create a new Ed25519 key pair in ``directory``.

    Writes ``<name>-private.pem`` (PKCS8, unencrypted, mode 0600) and
    ``<name>-public.pem`` (SubjectPublicKeyInfo, mode 0644), creating the
    directory if needed.

    :param overwrite: replace existing files; without it an existing file
        raises :class:`FileExistsError` and nothing is written.
    :return: ``(private_key_path, public_key_path)``.
    """
    directory = Path(directory)
    if not name or "/" in name or os.sep in name:
        raise ValueError(f"invalid key name {name!r}: must be a plain file name prefix")
    private_path = directory / f"{name}-private.pem"
    public_path = directory / f"{name}-public.pem"
    if not overwrite:
        refuse_existing((private_path, public_path), "the key pair")
    directory.mkdir(parents=True, exist_ok=True)

    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    write_file(private_path, private_pem, 0o600, overwrite, "the key pair")
    write_file(public_path, public_pem, 0o644, overwrite, "the key pair")
    return private_path, public_path


def _describe_key(key: object) -> str:
    """A short human name for a loaded key's type."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"an RSA-{key.key_size} key"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"an EC key on curve {key.curve.name}"
    if isinstance(key, (dsa.DSAPrivateKey, dsa.DSAPublicKey)):
        return "a DSA key"
    if isinstance(key, (ed448.Ed448PrivateKey, ed448.Ed448PublicKey)):
        return "an Ed448 key"
    if isinstance(key, (x25519.X25519PrivateKey, x25519.X25519PublicKey)):
        return "an X25519 key"
    if isinstance(key, (x448.X448PrivateKey, x448.X448PublicKey)):
        return "an X448 key"
    return f"a {type(key).__name__}"


def _read_pem(path: Path, what: str) -> bytes:
    data = read_file(path, what, KeyFileError)
    if b"-----BEGIN " not in data:
        found = "an empty file" if not data.strip() else "no PEM data"
        raise KeyFileError(f"{path} is not a PEM Ed25519 {what}: found {found}")
    return data


def load_private_key(path: str | os.PathLike[str]) -> ed25519.Ed25519PrivateKey:
    """Load an unencrypted PEM Ed25519 private key.

    :raises KeyFileError: the file is missing, unreadable, or holds something
        else (the message names the path and what was found).
    """
    path = Path(path)
    data = _read_pem(path, "private key")
    if b"-----BEGIN PUBLIC KEY" in data:
        raise KeyFileError(
            f"{path} is not a PEM Ed25519 private key: found a public key "
            "(tokens are issued with the private key)"
        )
    if b"-----BEGIN CERTIFICATE" in data:
        raise KeyFileError(f"{path} is not a PEM Ed25519 private key: found a certificate")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(
            f"{path} is not a usable Ed25519 private key: found an encrypted key "
            "(an unencrypted PKCS8 key is required)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(
            f"{path} is not a PEM Ed25519 private key: the PEM data could not be parsed ({exc})"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not a PEM Ed25519 private key: found {_describe_key(key)}")
    return key


def load_public_key(path: str | os.PathLike[str]) -> ed25519.Ed25519PublicKey:
    """Load a PEM (SubjectPublicKeyInfo) Ed25519 public key.

    :raises KeyFileError: the file is missing, unreadable, or holds something
        else (the message names the path and what was found).
    """
    path = Path(path)
    data = _read_pem(path, "public key")
    if b"PRIVATE KEY-----" in data:
        raise KeyFileError(
            f"{path} is not a PEM Ed25519 public key: found a private key "
            "(give the server the public key only)"
        )
    if b"-----BEGIN CERTIFICATE" in data:
        raise KeyFileError(f"{path} is not a PEM Ed25519 public key: found a certificate")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(
            f"{path} is not a PEM Ed25519 public key: the PEM data could not be parsed ({exc})"
        ) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise KeyFileError(f"{path} is not a PEM Ed25519 public key: found {_describe_key(key)}")
    return key


# -- issuing ------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str, part: str) -> bytes:
    """Strict base64url without padding; the text must be the canonical encoding."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise AuthError(f"malformed token: {part} is not valid base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise AuthError(f"malformed token: {part} is not valid base64url") from None
    if _b64encode(data) != text:  # stray low bits: another spelling of the same bytes
        raise AuthError(f"malformed token: {part} is not canonical base64url")
    return data


def _json_dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def issue_token(
    private_key: ed25519.Ed25519PrivateKey,
    *,
    subject: str,
    role: str,
    ttl_seconds: int,
    audience: str = DEFAULT_AUDIENCE,
    now: float | None = None,
) -> str:
    """Sign a token for ``subject`` acting as ``role``, valid ``ttl_seconds``.

    The token carries a random ``jti``.

    :param now: the issue time in seconds since the epoch (default: now).
    :raises ValueError: an empty subject or audience, a role not matching
        :data:`ROLE_PATTERN`, or a TTL that is not a positive integer.
    """
    if not isinstance(private_key, ed25519.Ed25519PrivateKey):
        raise TypeError(
            f"private_key must be an Ed25519PrivateKey, got {type(private_key).__name__}"
        )
    if not isinstance(subject, str) or not subject:
        raise ValueError(f"subject must be a non-empty string, got {subject!r}")
    if not isinstance(role, str) or not ROLE_PATTERN.fullmatch(role):
        raise ValueError(f"invalid role {role!r}: roles must match {ROLE_PATTERN.pattern}")
    if not isinstance(audience, str) or not audience:
        raise ValueError(f"audience must be a non-empty string, got {audience!r}")
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be a positive integer, got {ttl_seconds!r}")
    issued_at = int(time.time() if now is None else now)
    claims = {
        "sub": subject,
        "role": role,
        "iat": issued_at,
        "exp": issued_at + ttl_seconds,
        "aud": audience,
        "jti": secrets.token_urlsafe(16),
    }
    signing_input = f"{_b64encode(_json_dumps(_HEADER))}.{_b64encode(_json_dumps(claims))}"
    signature = private_key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{_b64encode(signature)}"


def parse_ttl(text: str) -> int:
    """Seconds in a lifetime such as ``"45s"``, ``"30m"``, ``"1h"``, ``"2d"`` or ``"3600"``.

    :raises ValueError: anything else, or zero; the message quotes ``text``.
    """
    match = _TTL.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"invalid TTL {text!r}: expected a number of seconds or a number with "
            "unit s, m, h or d, e.g. '45s', '30m', '1h', '2d', '3600'"
        )
    seconds = int(match.group(1)) * _TTL_UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"invalid TTL {text!r}: must be longer than zero")
    return seconds


# -- verifying ----------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _json_object(data: bytes, part: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise AuthError(f"malformed token: {part} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise AuthError(f"malformed token: {part} is not a JSON object")
    return value


def _when(timestamp: int) -> str:
    try:
        return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"timestamp {timestamp}"


def _duration(seconds: int) -> str:
    """``"86400 s (24 h)"``, or just seconds when they are not whole hours."""
    if seconds % 3600 == 0 and seconds < 10**12:
        return f"{seconds} s ({seconds // 3600} h)"
    return f"{seconds} s" if seconds < 10**15 else f"about 10^{len(str(seconds)) - 1} s"


def _claim(claims: dict[str, Any], name: str, kind: type) -> Any:
    if name not in claims:
        raise AuthError(f"missing claim {name!r}")
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "an integer" if kind is int else "a string"
        raise AuthError(f"claim {name!r} must be {expected}, got {type(value).__name__}")
    return value


class VerdictCache:
    """Claims of accepted tokens by token text: a bounded, thread-safe LRU.

    An entry holds from the earliest time its token was acceptable to its
    ``exp`` (both widened by the verifier's leeway); :meth:`get` at a time
    outside that window answers nothing (and drops the entry once past it),
    so the token goes through the full check again, which refuses it.
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"size must not be negative, got {size!r}")
        self.size = size
        self._entries: OrderedDict[str, tuple[float, float, Claims]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, now: float) -> Claims | None:
        """The claims kept for ``token`` if its verdict still holds at ``now``."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            good_from, good_until, claims = entry
            if now >= good_until:
                del self._entries[token]
                return None
            if now < good_from:
                return None  # a clock behind the first check: check in full
            self._entries.move_to_end(token)
            return claims

    def put(self, token: str, claims: Claims, good_from: float, good_until: float) -> None:
        """Keep ``claims`` for ``token`` from ``good_from`` until ``good_until``.

        The least recently used entry goes when the cache is full.
        """
        if self.size == 0:
            return
        with self._lock:
            self._entries[token] = (good_from, good_until, claims)
            self._entries.move_to_end(token)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every verdict."""
        with self._lock:
            self._entries.clear()


class TokenVerifier:
    """Checks tokens against one Ed25519 public key.

    :param public_key: the issuer's public key (see :func:`load_public_key`).
    :param audience: the ``aud`` a token must carry.
    :param leeway_seconds: clock skew tolerated on ``iat`` and ``exp``.
    :param max_lifetime_seconds: longest lifetime accepted: a token whose
        ``exp - iat`` is longer, or whose ``exp`` is further than this from
        now, is refused, however validly signed.
    """

    def __init__(
        self,
        public_key: ed25519.Ed25519PublicKey,
        audience: str = DEFAULT_AUDIENCE,
        leeway_seconds: int = 30,
        max_lifetime_seconds: int = DEFAULT_MAX_TOKEN_LIFETIME,
        cache_size: int = DEFAULT_VERDICT_CACHE_SIZE,
    ) -> None:
        if not isinstance(public_key, ed25519.Ed25519PublicKey):
            raise TypeError(
                f"public_key must be an Ed25519PublicKey, got {type(public_key).__name__}"
            )
        if not audience:
            raise ValueError("audience must be a non-empty string")
        if leeway_seconds < 0:
            raise ValueError(f"leeway_seconds must not be negative, got {leeway_seconds!r}")
        if max_lifetime_seconds <= 0:
            raise ValueError(
                f"max_lifetime_seconds must be positive, got {max_lifetime_seconds!r}"
            )
        self.cache = VerdictCache(cache_size)
        self.public_key = public_key
        self.audience = audience
        self.leeway_seconds = leeway_seconds
        self.max_lifetime_seconds = max_lifetime_seconds
        #: Signatures checked (tokens not answered from :attr:`cache`).
        self.verifications = 0

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        """The key signatures are checked with; setting it empties the cache."""
        return self._public_key

    @public_key.setter
    def public_key(self, key: ed25519.Ed25519PublicKey) -> None:
        self._public_key = key
        self.cache.clear()

    def verify(self, token: str | None, now: float | None = None) -> Claims:
        """The claims of ``token`` if it is genuine, current and for this audience.

        A token accepted before and not expired since is answered from
        :attr:`cache`.

        :param now: the time to check against, seconds since the epoch
            (default: now).
        :raises AuthError: the token is refused; the reason says why.
        """
        current = time.time() if now is None else now
        if isinstance(token, str):
            cached = self.cache.get(token, current)
            if cached is not None:
                return cached
        claims = self._verify(token, current)
        # Every check but the time window holds at any time; the window is
        # where iat, exp and the lifetime limit let the token through.
        leeway = self.leeway_seconds
        good_from = max(
            claims.issued_at - leeway, claims.expires_at - self.max_lifetime_seconds - leeway
        )
        self.cache.put(token, claims, good_from, claims.expires_at + leeway)  # type: ignore[arg-type]
        return claims

    def _verify(self, token: str | None, now: float) -> Claims:
        """The full check of :meth:`verify`: decode, signature, claims."""
        if not token:
            raise AuthError("missing token")
        if not isinstance(token, str):
            raise AuthError(f"malformed token: expected a string, got {type(token).__name__}")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError(
                f"malformed token: {len(token)} characters, more than {MAX_TOKEN_LENGTH}"
            )
        parts = token.split(".")
        if len(parts) != 3:
            raise AuthError(
                f"malformed token: expected three dot-separated parts, got {len(parts)}"
            )
        header_b64, claims_b64, signature_b64 = parts

        header = _json_object(_b64decode(header_b64, "header"), "header")
        alg = header.get("alg")
        if alg is None:
            raise AuthError("malformed token: header has no 'alg'")
        if isinstance(alg, str) and alg.lower() == "none":
            raise AuthError(
                "malformed token: header alg 'none' (unsigned token) is not accepted; "
                "expected 'EdDSA'"
            )
        if alg != "EdDSA":
            raise AuthError(
                f"malformed token: header alg {alg!r} is not supported; expected 'EdDSA'"
            )
        if header.get("typ", "JWT") != "JWT":
            raise AuthError(f"malformed token: header typ {header['typ']!r} is not 'JWT'")
        if "crit" in header:
            raise AuthError("malformed token: header 'crit' extensions are not supported")

        claims_bytes = _b64decode(claims_b64, "claims")
        signature = _b64decode(signature_b64, "signature")
        self.verifications += 1
        try:
            self.public_key.verify(signature, f"{header_b64}.{claims_b64}".encode("ascii"))
        except InvalidSignature:
            raise AuthError(
                "signature does not verify (the token was altered or signed with another key)"
            ) from None
        return self._check_claims(_json_object(claims_bytes, "claims"), now)

    def _check_claims(self, claims: dict[str, Any], now: float) -> Claims:
        subject = _claim(claims, "sub", str)
        role = _claim(claims, "role", str)
        issued_at = _claim(claims, "iat", int)
        expires_at = _claim(claims, "exp", int)
        audience = _claim(claims, "aud", str)
        token_id = claims.get("jti")
        if token_id is not None and not isinstance(token_id, str):
            raise AuthError(f"claim 'jti' must be a string, got {type(token_id).__name__}")
        if not subject:
            raise AuthError("claim 'sub' is empty")
        if not ROLE_PATTERN.fullmatch(role):
            raise AuthError(f"invalid role {role!r}: roles must match {ROLE_PATTERN.pattern}")
        if audience != self.audience:
            raise AuthError(f"wrong audience: expected {self.audience!r}, got {audience!r}")
        if expires_at <= issued_at:
            raise AuthError(f"claim 'exp' ({expires_at}) is not after claim 'iat' ({issued_at})")

        current = now
        if issued_at > current + self.leeway_seconds:
            raise AuthError(
                f"token not valid yet: issued at {_when(issued_at)}, "
                f"{issued_at - int(current)} s in the future"
            )
        if current >= expires_at + self.leeway_seconds:
            raise AuthError(
                f"token expired at {_when(expires_at)} ({int(current) - expires_at} s ago)"
            )
        limit = self.max_lifetime_seconds
        if expires_at - issued_at > limit:
            raise AuthError(
                f"token lifetime too long: exp - iat is {_duration(expires_at - issued_at)}, "
                f"this server accepts at most {_duration(limit)} (--max-token-lifetime); "
                "issue a shorter-lived token"
            )
        if expires_at > current + limit + self.leeway_seconds:
            raise AuthError(
                f"token lifetime too long: it expires at {_when(expires_at)}, further "
                f"from now than this server's maximum of {_duration(limit)} "
                "(--max-token-lifetime)"
            )
        return Claims(
            subject=subject,
            role=role,
            issued_at=issued_at,
            expires_at=expires_at,
            audience=audience,
            token_id=token_id,
        )

    def verify_header(self, authorization: str | None, now: float | None = None) -> Claims:
        """Verify the token in an ``Authorization: Bearer <token>`` header value.

        The scheme is case-insensitive.

        :raises AuthError: no header or no token ("missing bearer token"),
            another scheme, or a token :meth:`verify` refuses.
        """
        if authorization is None or not authorization.strip():
            raise AuthError("missing bearer token")
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            if _SCHEME.fullmatch(scheme):
                raise AuthError(f"authorization scheme must be Bearer, got {scheme!r}")
            # Not a scheme name -- perhaps a bare token; keep it out of the message.
            raise AuthError("malformed authorization header: expected 'Bearer <token>'")
        token = rest.strip()
        if not token:
            raise AuthError("missing bearer token")
        if _WHITESPACE.search(token):  # str.isspace's characters, scanned in C
            raise AuthError("malformed authorization header: expected 'Bearer <token>'")
        return self.verify(token, now=now)
