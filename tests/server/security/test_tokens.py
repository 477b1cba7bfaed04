"""Ed25519 bearer tokens: issuing, verifying, every refusal, key files."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from session_proxy_server.auth import (
    ROLES,
    AuthError,
    Claims,
    KeyFileError,
    TokenVerifier,
    generate_keypair,
    issue_token,
    load_private_key,
    load_public_key,
    parse_ttl,
)

NOW = 1_700_000_000
EDDSA = base64.urlsafe_b64encode(b'{"alg":"EdDSA"}').rstrip(b"=").decode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(header: object, claims: object) -> str:
    """``header.claims`` as a token's signing input, built independently of server.auth."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"


def signed(key: ed25519.Ed25519PrivateKey, claims: object, header: object | None = None) -> str:
    signing_input = encode(header or {"alg": "EdDSA", "typ": "JWT"}, claims)
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


def good_claims(**changes: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "sub": "worker-1",
        "role": "worker",
        "iat": NOW,
        "exp": NOW + 3600,
        "aud": "session-proxy",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture(scope="module")
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def verifier(key: ed25519.Ed25519PrivateKey) -> TokenVerifier:
    return TokenVerifier(key.public_key())


def refusal(verifier: TokenVerifier, token: str | None, now: float = NOW) -> str:
    with pytest.raises(AuthError) as info:
        verifier.verify(token, now=now)
    assert info.value.reason == str(info.value)
    return info.value.reason


# -- round trip -----------------------------------------------------------------


@pytest.mark.parametrize("role", [*ROLES, "backfill-runner"])
def test_round_trip(key, verifier, role):
    token = issue_token(key, subject="host-7", role=role, ttl_seconds=600, now=NOW + 0.9)
    claims = verifier.verify(token, now=NOW + 10)
    assert claims == Claims(
        subject="host-7",
        role=role,
        issued_at=NOW,
        expires_at=NOW + 600,
        audience="session-proxy",
        token_id=claims.token_id,
    )
    assert claims.token_id and isinstance(claims.token_id, str)
    with pytest.raises(dataclasses.FrozenInstanceError):
        claims.role = "admin"  # type: ignore[misc]


def test_token_is_a_standard_compact_jws(key):
    token = issue_token(key, subject="s", role="admin", ttl_seconds=60, now=NOW)
    header_b64, claims_b64, signature_b64 = token.split(".")
    assert "=" not in token
    assert json.loads(unb64(header_b64)) == {"alg": "EdDSA", "typ": "JWT"}
    claims = json.loads(unb64(claims_b64))
    assert {k: claims[k] for k in ("sub", "role", "iat", "exp", "aud")} == {
        "sub": "s",
        "role": "admin",
        "iat": NOW,
        "exp": NOW + 60,
        "aud": "session-proxy",
    }
    # Verifiable by any Ed25519 implementation over "header.claims".
    key.public_key().verify(unb64(signature_b64), f"{header_b64}.{claims_b64}".encode())


def test_token_ids_are_random(key):
    a = issue_token(key, subject="s", role="worker", ttl_seconds=60, now=NOW)
    b = issue_token(key, subject="s", role="worker", ttl_seconds=60, now=NOW)
    assert a != b


def test_verifier_accepts_a_token_built_independently(key, verifier):
    token = signed(key, good_claims(jti="abc"))
    assert verifier.verify(token, now=NOW).token_id == "abc"
    assert verifier.verify(signed(key, good_claims()), now=NOW).token_id is None


def test_custom_audience(key):
    token = issue_token(key, subject="s", role="worker", ttl_seconds=60, audience="db-a", now=NOW)
    assert (
        TokenVerifier(key.public_key(), audience="db-a").verify(token, now=NOW).audience == "db-a"
    )
    reason = refusal(TokenVerifier(key.public_key()), token)
    assert reason == "wrong audience: expected 'session-proxy', got 'db-a'"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": "", "role": "worker", "ttl_seconds": 60},
        {"subject": "s", "role": "Worker", "ttl_seconds": 60},
        {"subject": "s", "role": "", "ttl_seconds": 60},
        {"subject": "s", "role": "worker", "ttl_seconds": 0},
        {"subject": "s", "role": "worker", "ttl_seconds": -5},
        {"subject": "s", "role": "worker", "ttl_seconds": 60, "audience": ""},
    ],
)
def test_issue_token_rejects_bad_arguments(key, kwargs):
    with pytest.raises(ValueError):
        issue_token(key, **kwargs)


# -- refusals ---------------------------------------------------------------------


def test_forged_with_another_key(verifier):
    other = ed25519.Ed25519PrivateKey.generate()
    token = issue_token(other, subject="s", role="admin", ttl_seconds=60, now=NOW)
    assert refusal(verifier, token).startswith("signature does not verify")


def test_tampered_claims_keep_original_signature(key, verifier):
    token = issue_token(key, subject="s", role="worker", ttl_seconds=60, now=NOW)
    header_b64, claims_b64, signature_b64 = token.split(".")
    claims = json.loads(unb64(claims_b64))
    claims["role"] = "admin"
    tampered = f"{header_b64}.{b64(json.dumps(claims).encode())}.{signature_b64}"
    assert refusal(verifier, tampered).startswith("signature does not verify")
    # The untouched token is still fine, so it is the tampering that is refused.
    assert verifier.verify(token, now=NOW).role == "worker"


def test_flipped_signature_bit(key, verifier):
    token = issue_token(key, subject="s", role="worker", ttl_seconds=60, now=NOW)
    head, claims, signature_b64 = token.split(".")
    signature = bytearray(unb64(signature_b64))
    signature[0] ^= 1
    assert refusal(verifier, f"{head}.{claims}.{b64(bytes(signature))}").startswith(
        "signature does not verify"
    )


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(verifier, alg):
    for signature in ("", b64(b"x" * 64)):
        token = f"{encode({'alg': alg, 'typ': 'JWT'}, good_claims(role='admin'))}.{signature}"
        reason = refusal(verifier, token)
        assert reason.startswith("malformed token")
        assert "'none'" in reason and "not accepted" in reason


def test_alg_hs256_with_public_key_as_secret_is_refused(key, verifier):
    # The classic confusion attack: HMAC-sign with the (public) verification key.
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = encode({"alg": "HS256", "typ": "JWT"}, good_claims(role="admin"))
    mac = hmac.HMAC(public_pem, hashes.SHA256())
    mac.update(signing_input.encode())
    token = f"{signing_input}.{b64(mac.finalize())}"
    reason = refusal(verifier, token)
    assert reason == "malformed token: header alg 'HS256' is not supported; expected 'EdDSA'"


@pytest.mark.parametrize("header", [{"alg": "ES256"}, {"alg": "eddsa"}, {"alg": 1}, {"typ": "JWT"}])
def test_other_or_missing_alg_is_refused_even_when_ed25519_signed(key, verifier, header):
    reason = refusal(verifier, signed(key, good_claims(), header=header))
    assert reason.startswith("malformed token: header")
    assert "alg" in reason


def test_header_typ_and_crit(key, verifier):
    assert "typ" in refusal(verifier, signed(key, good_claims(), {"alg": "EdDSA", "typ": "JWE"}))
    assert "crit" in refusal(
        verifier, signed(key, good_claims(), {"alg": "EdDSA", "crit": ["exp"], "x": 1})
    )
    # typ is optional
    assert verifier.verify(signed(key, good_claims(), {"alg": "EdDSA"}), now=NOW).subject


def test_expired(key, verifier):
    token = issue_token(key, subject="s", role="worker", ttl_seconds=60, now=NOW)
    assert verifier.verify(token, now=NOW + 60 + 29).subject == "s"  # inside the leeway
    reason = refusal(verifier, token, now=NOW + 60 + 100)
    assert reason == "token expired at 2023-11-14T22:14:20Z (100 s ago)"
    strict = TokenVerifier(key.public_key(), leeway_seconds=0)
    assert refusal(strict, token, now=NOW + 60).startswith("token expired at")


def test_not_yet_valid(key, verifier):
    token = issue_token(key, subject="s", role="worker", ttl_seconds=600, now=NOW + 300)
    assert verifier.verify(token, now=NOW + 280).subject == "s"  # inside the leeway
    reason = refusal(verifier, token, now=NOW)
    assert reason == "token not valid yet: issued at 2023-11-14T22:18:20Z, 300 s in the future"


def test_verify_uses_the_clock_by_default(key, verifier):
    fresh = issue_token(key, subject="s", role="worker", ttl_seconds=3600)
    assert verifier.verify(fresh).subject == "s"
    stale = issue_token(key, subject="s", role="worker", ttl_seconds=60, now=NOW)
    assert verifier.verify_header(f"Bearer {fresh}").subject == "s"
    with pytest.raises(AuthError, match="^token expired at 2023-11-14"):
        verifier.verify(stale)


def test_wrong_audience(key, verifier):
    token = signed(key, good_claims(aud="other-service"))
    assert (
        refusal(verifier, token) == "wrong audience: expected 'session-proxy', got 'other-service'"
    )


@pytest.mark.parametrize("name", ["sub", "role", "iat", "exp", "aud"])
def test_missing_claim(key, verifier, name):
    claims = good_claims()
    del claims[name]
    assert refusal(verifier, signed(key, claims)) == f"missing claim {name!r}"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sub": 5}, "claim 'sub' must be a string, got int"),
        ({"role": ["admin"]}, "claim 'role' must be a string, got list"),
        ({"iat": "1700000000"}, "claim 'iat' must be an integer, got str"),
        ({"exp": float(NOW + 60)}, "claim 'exp' must be an integer, got float"),
        ({"exp": True}, "claim 'exp' must be an integer, got bool"),
        ({"aud": ["session-proxy"]}, "claim 'aud' must be a string, got list"),
        ({"jti": 7}, "claim 'jti' must be a string, got int"),
        ({"sub": ""}, "claim 'sub' is empty"),
        ({"exp": NOW}, f"claim 'exp' ({NOW}) is not after claim 'iat' ({NOW})"),
    ],
)
def test_ill_typed_claims(key, verifier, changes, expected):
    assert refusal(verifier, signed(key, good_claims(**changes))) == expected


@pytest.mark.parametrize("role", ["Admin", "admin!", "1worker", "-x", "work er", "wörker"])
def test_bad_role_format(key, verifier, role):
    reason = refusal(verifier, signed(key, good_claims(role=role)))
    assert reason == f"invalid role {role!r}: roles must match [a-z][a-z0-9-]*"


def test_claims_must_be_a_json_object(key, verifier):
    assert refusal(verifier, signed(key, ["sub"])) == "malformed token: claims is not a JSON object"


def test_duplicate_claim_keys_are_refused(key, verifier):
    raw = b'{"sub":"s","role":"worker","role":"admin","iat":%d,"exp":%d,"aud":"session-proxy"}' % (
        NOW,
        NOW + 60,
    )
    signing_input = f"{EDDSA}.{b64(raw)}"
    token = f"{signing_input}.{b64(key.sign(signing_input.encode()))}"
    reason = refusal(verifier, token)
    assert reason.startswith("malformed token: claims is not valid JSON")
    assert "duplicate key 'role'" in reason


@pytest.mark.parametrize("token", [None, ""])
def test_empty_token(verifier, token):
    assert refusal(verifier, token) == "missing token"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("garbage", "malformed token: expected three dot-separated parts, got 1"),
        ("a.b", "malformed token: expected three dot-separated parts, got 2"),
        ("a.b.c.d", "malformed token: expected three dot-separated parts, got 4"),
        ("..", "malformed token: header is not valid JSON"),
        ("!!!.e30.AAAA", "malformed token: header is not valid base64url"),
        ("e30=.e30.AAAA", "malformed token: header is not valid base64url"),
        ("a.e30.AAAA", "malformed token: header is not valid base64url"),
        (f"{b64(b'not json')}.e30.AAAA", "malformed token: header is not valid JSON"),
        (f"{b64(b'[1]')}.e30.AAAA", "malformed token: header is not a JSON object"),
        (f"{b64(bytes([0xFF, 0xFE]))}.e30.AAAA", "malformed token: header is not valid JSON"),
        (f"{EDDSA}.e3*.AAAA", "malformed token: claims is not valid base64url"),
        (f"{EDDSA}.e30.AA+A", "malformed token: signature is not valid base64url"),
        ("x" * 9000, "malformed token: 9000 characters, more than 8192"),
    ],
)
def test_garbage(verifier, token, expected):
    assert refusal(verifier, token).startswith(expected)


def test_non_canonical_base64_signature_is_refused(key, verifier):
    token = issue_token(key, subject="s", role="worker", ttl_seconds=60, now=NOW)
    head, claims, signature = token.split(".")
    # 64 bytes -> 86 characters; the last one carries 2 unused bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    variant = signature[:-1] + alphabet[last ^ 1]
    assert unb64(variant) == unb64(signature)
    assert refusal(verifier, f"{head}.{claims}.{variant}") == (
        "malformed token: signature is not canonical base64url"
    )


def test_wrong_length_signature(key, verifier):
    signing_input = encode({"alg": "EdDSA"}, good_claims())
    token = f"{signing_input}.{b64(key.sign(signing_input.encode())[:32])}"
    assert refusal(verifier, token).startswith("signature does not verify")


# -- Authorization header ----------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_verify_header(key, verifier, scheme):
    token = issue_token(key, subject="s", role="triggerer", ttl_seconds=60, now=NOW)
    assert verifier.verify_header(f"{scheme} {token}", now=NOW).role == "triggerer"
    assert verifier.verify_header(f"  {scheme}   {token}  ", now=NOW).role == "triggerer"


@pytest.mark.parametrize("value", [None, "", "   ", "Bearer", "Bearer   "])
def test_header_without_token(verifier, value):
    with pytest.raises(AuthError, match="^missing bearer token$"):
        verifier.verify_header(value, now=NOW)


def test_non_bearer_header(key, verifier):
    token = issue_token(key, subject="s", role="worker", ttl_seconds=60, now=NOW)
    with pytest.raises(AuthError, match="^authorization scheme must be Bearer, got 'Basic'$"):
        verifier.verify_header("Basic dXNlcjpwYXNz", now=NOW)
    with pytest.raises(AuthError, match="^authorization scheme must be Bearer, got 'Token'$"):
        verifier.verify_header(f"Token {token}", now=NOW)
    # A bare token is refused without echoing it.
    with pytest.raises(AuthError) as info:
        verifier.verify_header(token, now=NOW)
    assert token not in info.value.reason
    assert info.value.reason == "malformed authorization header: expected 'Bearer <token>'"
    with pytest.raises(AuthError, match="^malformed authorization header"):
        verifier.verify_header(f"Bearer {token} extra", now=NOW)


def test_header_passes_token_failures_through(verifier):
    other = ed25519.Ed25519PrivateKey.generate()
    token = issue_token(other, subject="s", role="worker", ttl_seconds=60, now=NOW)
    with pytest.raises(AuthError, match="^signature does not verify"):
        verifier.verify_header(f"Bearer {token}", now=NOW)


def test_verifier_needs_an_ed25519_public_key(key):
    with pytest.raises(TypeError):
        TokenVerifier(key)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TokenVerifier(key.public_key(), leeway_seconds=-1)


# -- parse_ttl ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("30m", 1800),
        ("1h", 3600),
        ("2d", 172800),
        ("3600", 3600),
        ("1H", 3600),
        (" 10m ", 600),
    ],
)
def test_parse_ttl(text, seconds):
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1.5h", "-1h", "1h30m", "0", "0s", "one hour"])
def test_parse_ttl_rejects(text):
    with pytest.raises(ValueError) as info:
        parse_ttl(text)
    assert repr(text) in str(info.value)


# -- key files --------------------------------------------------------------------------


def test_generate_keypair(tmp_path):
    private_path, public_path = generate_keypair(tmp_path / "keys")
    assert private_path == tmp_path / "keys" / "session-proxy-private.pem"
    assert public_path == tmp_path / "keys" / "session-proxy-public.pem"
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")

    private_key = load_private_key(private_path)
    verifier = TokenVerifier(load_public_key(public_path))
    token = issue_token(private_key, subject="s", role="worker", ttl_seconds=60, now=NOW)
    assert verifier.verify(token, now=NOW).subject == "s"


def test_generate_keypair_private_key_mode_ignores_umask(tmp_path):
    old = os.umask(0)
    try:
        private_path, _ = generate_keypair(tmp_path, name="loose")
    finally:
        os.umask(old)
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600


def test_generate_keypair_refuses_to_overwrite(tmp_path):
    private_path, public_path = generate_keypair(tmp_path, name="k")
    before = private_path.read_bytes()
    with pytest.raises(FileExistsError) as info:
        generate_keypair(tmp_path, name="k")
    assert str(private_path) in str(info.value)
    assert "overwrite=True" in str(info.value)
    assert private_path.read_bytes() == before

    # Only the public key left behind: still refused, naming that file, nothing written.
    private_path.unlink()
    with pytest.raises(FileExistsError, match="k-public.pem"):
        generate_keypair(tmp_path, name="k")
    assert not private_path.exists()


def test_generate_keypair_overwrite(tmp_path):
    private_path, public_path = generate_keypair(tmp_path)
    private_path.chmod(0o644)
    old_public = public_path.read_bytes()
    assert generate_keypair(tmp_path, overwrite=True) == (private_path, public_path)
    assert public_path.read_bytes() != old_public
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    load_private_key(private_path).public_key().verify(
        load_private_key(private_path).sign(b"m"), b"m"
    )
    load_public_key(public_path).verify(load_private_key(private_path).sign(b"m"), b"m")


def test_load_missing_key_files(tmp_path):
    with pytest.raises(KeyFileError, match=r"private key file .*nope\.pem does not exist"):
        load_private_key(tmp_path / "nope.pem")
    with pytest.raises(KeyFileError, match=r"public key file .*nope\.pem does not exist"):
        load_public_key(tmp_path / "nope.pem")


def test_load_swapped_key_files(tmp_path):
    private_path, public_path = generate_keypair(tmp_path)
    with pytest.raises(KeyFileError) as info:
        load_private_key(public_path)
    assert str(public_path) in str(info.value) and "found a public key" in str(info.value)
    with pytest.raises(KeyFileError) as info:
        load_public_key(private_path)
    assert str(private_path) in str(info.value) and "found a private key" in str(info.value)


def test_load_other_key_types(tmp_path):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_private = tmp_path / "ec.pem"
    ec_private.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ec_public = tmp_path / "ec.pub"
    ec_public.write_bytes(
        ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFileError) as info:
        load_private_key(ec_private)
    assert str(info.value) == (
        f"{ec_private} is not a PEM Ed25519 private key: found an EC key on curve secp256r1"
    )
    with pytest.raises(KeyFileError) as info:
        load_public_key(ec_public)
    assert str(info.value) == (
        f"{ec_public} is not a PEM Ed25519 public key: found an EC key on curve secp256r1"
    )


def test_load_encrypted_and_garbage_key_files(tmp_path):
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(KeyFileError, match="found an encrypted key") as info:
        load_private_key(encrypted)
    assert str(encrypted) in str(info.value)

    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(KeyFileError, match="found an empty file"):
        load_public_key(empty)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(
        KeyFileError, match=r"notes\.txt is not a PEM Ed25519 private key: found no"
    ):
        load_private_key(text)
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(KeyFileError, match=r"broken\.pem .*could not be parsed"):
        load_public_key(broken)
    with pytest.raises(KeyFileError, match="is a directory"):
        load_public_key(tmp_path)
